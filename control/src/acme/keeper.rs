//! The running side: `AcmeService` (one per process, from `[acme]`) and `AcmeCerts` (one per
//! tls server with `acme_hosts`), whose task keeps each host's certificate fresh: the cached
//! one at start if it is still valid, else an order; a renewal when it is due; on failure a
//! retry after a doubling wait. Failures are logged when a host starts failing and when it
//! recovers, not at every retry.

use super::challenge::{self, Challenges};
use super::client::DirectoryClient;
use super::issue;
use super::store::{self, Issued};
use super::{AcmeSettings, ChallengeKind};
use crate::config::{Acme, GoDuration};
use arc_swap::ArcSwapOption;
use instant_acme::Account;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::{AbortHandle, JoinSet};

/// The first wait after a failed order, doubled at each failure up to `LAST_RETRY`. Let's
/// Encrypt allows 5 failed validations per host and hour.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LAST_RETRY: Duration = Duration::from_secs(3600);
/// A whole order, from the new-order request to the chain.
const ORDER_TIME: Duration = Duration::from_secs(300);
/// A certificate not yet due is looked at again after this long at most (a wall clock that
/// jumps is noticed).
const RECHECK: Duration = Duration::from_secs(3600);

/// Counters for `betwixt_acme_*`.
#[derive(Debug, Default)]
pub struct AcmeStats {
    pub orders: AtomicU64,
    pub issued: AtomicU64,
    pub failures: AtomicU64,
}

pub struct AcmeService {
    pub settings: AcmeSettings,
    pub challenges: Arc<Challenges>,
    pub stats: AcmeStats,
    client: DirectoryClient,
    /// Made (or loaded) at the first order; the lock is held only across that.
    account: tokio::sync::Mutex<Option<Account>>,
    /// Each host belongs to one server at a time (gobetween refuses a second one too).
    hosts: Mutex<HashMap<String, Weak<AcmeCerts>>>,
    /// Every `AcmeCerts` made, for the metrics.
    all: Mutex<Vec<Weak<AcmeCerts>>>,
    http: Option<AbortHandle>,
}

impl fmt::Debug for AcmeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Drop for AcmeService {
    fn drop(&mut self) {
        if let Some(http) = &self.http {
            http.abort();
        }
    }
}

impl AcmeService {
    /// Reads `[acme]`, checks `cache_dir` (creating it) and the CA bundle, and for HTTP-01
    /// listens on `http_bind`. Nothing is ordered yet. Must run inside the control runtime.
    pub fn start(section: &Acme) -> Result<Arc<AcmeService>, String> {
        let mut service = AcmeService::open(section, true)?;
        if service.settings.challenge == ChallengeKind::Http {
            let bind = &service.settings.http_bind;
            // Bound as the API's listener is, or taken from a predecessor (`upgrade`).
            let listener = crate::api::serve::listen(bind)
                .map_err(|e| format!("acme.http_bind: cannot listen on {bind}: {e}"))?;
            log::info!("acme: answering HTTP-01 challenges on {bind}");
            let challenges = service.challenges.clone();
            service.http = Some(challenge::serve_http(listener, challenges).abort_handle());
        }
        Ok(Arc::new(service))
    }

    /// What `start` reads and checks before it listens, without creating `cache_dir`: for
    /// `betwixt check`, which must fail where a start would and change nothing.
    pub fn check(section: &Acme) -> Result<Arc<AcmeService>, String> {
        AcmeService::open(section, false).map(Arc::new)
    }

    /// The service without its HTTP-01 listener. `create`: make `cache_dir` when missing.
    fn open(section: &Acme, create: bool) -> Result<AcmeService, String> {
        let settings =
            AcmeSettings::from_section(section).map_err(|e| format!("acme.{}: {}", e.field, e.message))?;
        store::check_dir(&settings.cache_dir, create).map_err(|e| format!("acme.cache_dir: {e}"))?;
        let roots = crate::tls::roots(settings.root_ca_cert_path.as_deref())
            .map_err(|e| format!("acme.root_ca_cert_path: {}", e.message))?;
        let client = DirectoryClient::new(roots)?;
        Ok(AcmeService {
            settings,
            challenges: Arc::new(Challenges::default()),
            stats: AcmeStats::default(),
            client,
            account: tokio::sync::Mutex::new(None),
            hosts: Mutex::new(HashMap::new()),
            all: Mutex::new(Vec::new()),
            http: None,
        })
    }

    /// The certificates of `server`'s `hosts`, claimed for it. Refused when another running
    /// server has one of the hosts.
    pub fn certs_for(self: &Arc<Self>, server: &str, hosts: &[String]) -> Result<Arc<AcmeCerts>, String> {
        let mut names = Vec::new();
        for host in hosts {
            let name = super::host_name(host)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut claimed = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let mut hosts = Vec::with_capacity(names.len());
        for host in names {
            // A reload replacing this server's section takes over its hosts and keeps serving
            // the certificates they have until the new set renews them.
            let served = match claimed.get(&host).and_then(Weak::upgrade) {
                Some(other) if other.server != server => {
                    return Err(format!(
                        "acme host {host} is already configured for server {:?}",
                        other.server
                    ));
                }
                Some(same) => {
                    same.hosts.iter().find(|(h, _)| *h == host).and_then(|(_, cert)| cert.load_full())
                }
                None => None,
            };
            hosts.push((host, ArcSwapOption::new(served)));
        }
        let certs = Arc::new(AcmeCerts {
            service: self.clone(),
            server: server.to_string(),
            hosts,
            expiry: Mutex::new(HashMap::new()),
        });
        for (host, _) in &certs.hosts {
            claimed.insert(host.clone(), Arc::downgrade(&certs));
        }
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&certs));
        Ok(certs)
    }

    /// Every claimed host's certificate expiry (seconds since the epoch, 0 while it has none),
    /// as `(server, host, seconds)`.
    pub fn expiries(&self) -> Vec<(String, String, u64)> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = all
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|certs| {
                let expiry = certs.expiry.lock().unwrap_or_else(|e| e.into_inner());
                let seconds = |host: &String| *expiry.get(host).unwrap_or(&0);
                certs
                    .hosts
                    .iter()
                    .map(|(h, _)| (certs.server.clone(), h.clone(), seconds(h)))
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    }

    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let account = issue::account(&self.settings, &self.client).await?;
        *slot = Some(account.clone());
        Ok(account)
    }

    async fn obtain(&self, host: &str) -> Result<Issued, String> {
        let account = self.account().await?;
        let ordered = || {
            self.stats.orders.fetch_add(1, Relaxed);
        };
        let order = issue::order(&account, &self.settings, &self.challenges, host, ordered);
        tokio::time::timeout(ORDER_TIME, order)
            .await
            .unwrap_or_else(|_| Err(format!("no certificate within {}", GoDuration(ORDER_TIME))))
    }
}

/// The certificates a tls server with `acme_hosts` serves: the one whose host the client
/// names (SNI), else the first host's. A server with none yet fails handshakes.
pub struct AcmeCerts {
    service: Arc<AcmeService>,
    server: String,
    hosts: Vec<(String, ArcSwapOption<CertifiedKey>)>,
    /// Each host's expiry, for the metrics (control thread only).
    expiry: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for AcmeCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self.hosts.iter().map(|(h, _)| h.as_str()).collect();
        write!(f, "AcmeCerts({}, {hosts:?})", self.server)
    }
}

impl ResolvesServerCert for AcmeCerts {
    /// The certificate of the host the client names; a name not listed fails the handshake, as
    /// autocert's host policy fails it in gobetween. A client that names none gets the first
    /// host's that has one.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(name) => self.hosts.iter().find(|(h, _)| h.eq_ignore_ascii_case(name))?.1.load_full(),
            None => self.hosts.iter().find_map(|(_, slot)| slot.load_full()),
        }
    }
}

impl Drop for AcmeCerts {
    fn drop(&mut self) {
        self.release();
    }
}

/// Gives the hosts up when the keeping task ends (its server was removed).
struct Release(Arc<AcmeCerts>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl AcmeCerts {
    pub fn challenges(&self) -> Option<Arc<Challenges>> {
        (self.service.settings.challenge == ChallengeKind::TlsAlpn).then(|| self.service.challenges.clone())
    }

    fn release(&self) {
        let me: *const AcmeCerts = self;
        let mut claimed = self.service.hosts.lock().unwrap_or_else(|e| e.into_inner());
        claimed.retain(|_, owner| !std::ptr::eq(owner.as_ptr(), me));
    }

    /// Puts each host's cached certificate in place at once, if still valid, then keeps every
    /// host's certificate until aborted. Runs on the control thread. The cache is read here, not
    /// in the task: the server's shards accept once its first discovery round is in, which can
    /// run before this task does, and a client would then find no certificate.
    pub fn run(self: Arc<Self>) -> impl std::future::Future<Output = ()> {
        let cached: Vec<Option<Issued>> =
            (0..self.hosts.len()).map(|index| self.serve_cached(index)).collect();
        async move {
            let _release = Release(self.clone());
            let mut hosts = JoinSet::new();
            for (index, current) in cached.into_iter().enumerate() {
                hosts.spawn(self.clone().keep(index, current));
            }
            while hosts.join_next().await.is_some() {}
        }
    }

    /// Serves `issued` for host `index`.
    fn install(&self, index: usize, issued: &Issued) -> Result<(), String> {
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(issued.chain.clone(), issued.key.clone_key(), &provider)
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        let (host, slot) = &self.hosts[index];
        slot.store(Some(Arc::new(certified)));
        let seconds = issued.not_after.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.expiry.lock().unwrap_or_else(|e| e.into_inner()).insert(host.clone(), seconds);
        Ok(())
    }

    /// The cached certificate of host `index`, served if still valid.
    fn serve_cached(&self, index: usize) -> Option<Issued> {
        let (host, server) = (&self.hosts[index].0, &self.server);
        let cached = match store::load_cert(&self.service.settings.cache_dir, host) {
            Ok(cached) => cached?,
            Err(e) => {
                log::warn!(
                    "acme: server {server}: cached certificate of {host} unusable ({e}); ordering one"
                );
                return None;
            }
        };
        if cached.not_after <= SystemTime::now() {
            log::info!("acme: server {server}: cached certificate of {host} has expired; ordering one");
            return None;
        }
        match self.install(index, &cached) {
            Ok(()) => {
                log::info!(
                    "acme: server {server}: serving the cached certificate of {host} ({})",
                    left(&cached)
                );
                Some(cached)
            }
            Err(e) => {
                log::warn!("acme: server {server}: cached certificate of {host}: {e}; ordering one");
                None
            }
        }
    }

    async fn keep(self: Arc<Self>, index: usize, mut current: Option<Issued>) {
        let (host, server) = (&self.hosts[index].0, &self.server);
        let service = &self.service;
        let mut retry = FIRST_RETRY;
        let mut failing = false;
        loop {
            if let Some(cert) = &current {
                let due = cert.renew_at(service.settings.renew_before);
                if let Ok(wait) = due.duration_since(SystemTime::now()) {
                    tokio::time::sleep(wait.min(RECHECK)).await;
                    continue;
                }
            }
            let result = match service.obtain(host).await {
                Ok(issued) => self.install(index, &issued).map(|()| issued),
                Err(e) => Err(e),
            };
            match result {
                Ok(issued) => {
                    service.stats.issued.fetch_add(1, Relaxed);
                    log::info!("acme: server {server}: new certificate for {host} ({})", left(&issued));
                    if let Err(e) = store::save_cert(&service.settings.cache_dir, host, &issued) {
                        log::warn!("acme: server {server}: {e}; a restart will order a new certificate");
                    }
                    current = Some(issued);
                    (retry, failing) = (FIRST_RETRY, false);
                }
                Err(e) => {
                    service.stats.failures.fetch_add(1, Relaxed);
                    let wait = GoDuration(retry);
                    if failing {
                        log::debug!("acme: server {server}: {host}: {e}; trying again in {wait}");
                    } else {
                        let serving =
                            if current.is_some() { "serving the current one" } else { "no certificate yet" };
                        log::warn!("acme: server {server}: no certificate for {host}: {e}; {serving}, trying again in {wait}");
                    }
                    failing = true;
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }
}

/// "valid for 89d23h..." for logs.
fn left(issued: &Issued) -> String {
    let left = issued.not_after.duration_since(SystemTime::now()).unwrap_or_default();
    format!("valid for {}", GoDuration(Duration::from_secs(left.as_secs())))
}
