//! The account, and the order of one host's certificate: new order, answer the challenge,
//! wait for the CA's validation, send a CSR for a fresh key, fetch the chain.

use super::challenge::{Challenges, Posted};
use super::client::DirectoryClient;
use super::store::{self, Issued};
use super::{AcmeSettings, ChallengeKind};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;

/// How long the CA may take to validate, and then to issue: Let's Encrypt takes seconds.
const VALIDATION_TIME: Duration = Duration::from_secs(90);

/// Loads the account cached for the directory, or registers a new one and caches it.
pub async fn account(settings: &AcmeSettings, client: &DirectoryClient) -> Result<Account, String> {
    let dir = &settings.cache_dir;
    let url = &settings.directory_url;
    let builder = || Account::builder_with_http(Box::new(client.clone()));
    if let Some(credentials) = store::load_account(dir, url)? {
        return builder().from_credentials(credentials).await.map_err(|e| format!("account: {e}"));
    }
    let contact = settings.email.as_ref().map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        builder().create(&new, url.clone(), None).await.map_err(|e| format!("new account: {e}"))?;
    store::save_account(dir, url, credentials)?;
    log::info!("acme: registered an account with {url}");
    Ok(account)
}

/// Orders a certificate for `host`. `ordered` is called once the CA has taken the order.
pub async fn order(
    account: &Account,
    settings: &AcmeSettings,
    challenges: &Arc<Challenges>,
    host: &str,
    ordered: impl FnOnce(),
) -> Result<Issued, String> {
    let ids = [Identifier::Dns(host.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(|e| format!("new order: {e}"))?;
    ordered();
    // Answers stay up until the order is over (dropped on every way out).
    let mut posted: Vec<Posted> = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let kind = match settings.challenge {
            ChallengeKind::Http => ChallengeType::Http01,
            ChallengeKind::TlsAlpn => ChallengeType::TlsAlpn01,
        };
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
        let key_authorization = challenge.key_authorization();
        posted.push(match settings.challenge {
            ChallengeKind::Http => challenges.post_http(&challenge.token, key_authorization.as_str()),
            ChallengeKind::TlsAlpn => {
                let provider = rustls::crypto::ring::default_provider();
                challenges.post_alpn(host, key_authorization.digest().as_ref(), &provider)?
            }
        });
        challenge.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
    }
    let retries = RetryPolicy::new().initial_delay(Duration::from_millis(500)).timeout(VALIDATION_TIME);
    let status = order.poll_ready(&retries).await.map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("validation failed: the order is {status:?}"));
    }
    drop(posted);

    let key = rcgen::KeyPair::generate().map_err(|e| format!("no key: {e}"))?;
    let csr = rcgen::CertificateParams::new(vec![host.to_string()])
        .and_then(|params| params.serialize_request(&key))
        .map_err(|e| format!("CSR: {e}"))?;
    order.finalize_csr(csr.der()).await.map_err(|e| format!("finalize: {e}"))?;
    let chain = order.poll_certificate(&retries).await.map_err(|e| format!("certificate: {e}"))?;
    Issued::from_chain(chain.as_bytes(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
}
