//! `probe`: send `probe_send` to the backend over tcp, udp or tls and compare the start of the
//! reply with `probe_recv`, either as bytes (`starts_with`) or as a regular expression
//! (`regexp`, searched in the first `probe_recv_len` bytes).
//!
//! Over tls the backend's certificate is not verified (as in gobetween): the probe asks "does
//! the service answer", not "is this the right peer", and backends often use self-signed or
//! internal certificates. The handshake signature itself is still checked.

use super::escapes::unescape;
use super::{shown, Failure};
use crate::config::model::Healthcheck;
use regex::bytes::{Regex, RegexBuilder};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest reply considered when `probe_recv_len` does not say.
const MAX_REPLY: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
    Tls,
}

#[derive(Clone, Debug)]
enum Expect {
    StartsWith(Vec<u8>),
    Regexp(Regex),
}

#[derive(Clone, Debug)]
pub struct Probe {
    transport: Transport,
    send: Vec<u8>,
    expect: Expect,
    /// Bytes to read before comparing; 0 = as many as `probe_recv` has.
    recv_len: usize,
}

impl PartialEq for Probe {
    fn eq(&self, other: &Probe) -> bool {
        let expect = match (&self.expect, &other.expect) {
            (Expect::StartsWith(a), Expect::StartsWith(b)) => a == b,
            (Expect::Regexp(a), Expect::Regexp(b)) => a.as_str() == b.as_str(),
            _ => false,
        };
        expect
            && self.transport == other.transport
            && self.send == other.send
            && self.recv_len == other.recv_len
    }
}

/// Why a probe section is invalid, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeError {
    pub field: &'static str,
    pub message: String,
}

fn error(field: &'static str, message: impl Into<String>) -> ProbeError {
    ProbeError { field, message: message.into() }
}

impl Probe {
    pub fn from_section(raw: &Healthcheck) -> Result<Probe, ProbeError> {
        let transport = match raw.probe_protocol.as_deref() {
            Some("tcp") => Transport::Tcp,
            Some("udp") => Transport::Udp,
            Some("tls") => Transport::Tls,
            Some(other) => {
                return Err(error("probe_protocol", format!("must be tcp, udp or tls, not {other:?}")))
            }
            None => return Err(error("probe_protocol", "required when kind is \"probe\" (tcp, udp or tls)")),
        };
        let send = raw
            .probe_send
            .as_deref()
            .ok_or_else(|| error("probe_send", "required when kind is \"probe\""))?;
        let send = unescape(send).map_err(|e| error("probe_send", e))?;
        let recv = raw
            .probe_recv
            .as_deref()
            .ok_or_else(|| error("probe_recv", "required when kind is \"probe\""))?;
        let recv_len = raw.probe_recv_len.unwrap_or(0) as usize;
        // Left out or empty is starts_with, as in gobetween.
        let expect = match raw.probe_strategy.as_deref().unwrap_or("") {
            "" | "starts_with" => Expect::StartsWith(unescape(recv).map_err(|e| error("probe_recv", e))?),
            "regexp" => {
                if recv_len == 0 {
                    return Err(error(
                        "probe_recv_len",
                        "must be greater than 0 when probe_strategy is \"regexp\"",
                    ));
                }
                // Without Unicode mode `\xNN` means one byte, as in the starts_with escapes.
                let regex = RegexBuilder::new(recv)
                    .unicode(false)
                    .build()
                    .map_err(|e| error("probe_recv", format!("invalid regular expression: {e}")))?;
                Expect::Regexp(regex)
            }
            other => {
                return Err(error("probe_strategy", format!("must be starts_with or regexp, not {other:?}")));
            }
        };
        Ok(Probe { transport, send, expect, recv_len })
    }

    /// How many reply bytes to collect before judging.
    fn wanted(&self) -> usize {
        match (&self.expect, self.recv_len) {
            (_, n) if n > 0 => n.min(MAX_REPLY),
            (Expect::StartsWith(prefix), _) => prefix.len(),
            (Expect::Regexp(_), _) => MAX_REPLY,
        }
    }

    fn judge(&self, reply: &[u8]) -> Result<(), Failure> {
        let (passed, expected) = match &self.expect {
            Expect::StartsWith(prefix) => {
                (reply.starts_with(prefix), format!("starting with {}", shown(prefix)))
            }
            Expect::Regexp(regex) => (regex.is_match(reply), format!("matching {:?}", regex.as_str())),
        };
        match passed {
            true => Ok(()),
            false => Err(format!("probe got {}, expected a reply {expected}", shown(reply))),
        }
    }

    /// Runs the probe against the first address that accepts a connection; `host` names the
    /// backend for TLS. Fails with every address's connect error when none does.
    pub async fn check(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Failure> {
        let mut failures = Vec::new();
        for &addr in addrs {
            let reply = match self.transport {
                Transport::Udp => self.exchange_udp(addr).await,
                Transport::Tcp => match TcpStream::connect(addr).await {
                    Ok(stream) => self.exchange(stream).await,
                    Err(e) => {
                        failures.push(format!("connect to {addr}: {e}"));
                        continue;
                    }
                },
                Transport::Tls => match tls_connect(host, addr).await {
                    Ok(stream) => self.exchange(stream).await,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                },
            };
            return reply.map_err(|e| format!("probe to {addr}: {e}")).and_then(|reply| self.judge(&reply));
        }
        Err(if failures.is_empty() { "no address to connect to".to_string() } else { failures.join("; ") })
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) -> Result<Vec<u8>, Failure> {
        let sent = async {
            stream.write_all(&self.send).await?;
            stream.flush().await
        };
        sent.await.map_err(|e| format!("cannot send: {e}"))?;
        let wanted = self.wanted();
        let mut reply = vec![0; wanted];
        let mut filled = 0;
        while filled < wanted {
            match stream.read(&mut reply[filled..]).await {
                Ok(0) | Err(_) => break, // judge what arrived
                Ok(n) => filled += n,
            }
        }
        reply.truncate(filled);
        Ok(reply)
    }

    async fn exchange_udp(&self, addr: SocketAddr) -> Result<Vec<u8>, Failure> {
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sent = async {
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            socket.send(&self.send).await?;
            Ok::<_, std::io::Error>(socket)
        };
        let socket = sent.await.map_err(|e| format!("cannot send: {e}"))?;
        let mut reply = vec![0; MAX_REPLY];
        let n = socket.recv(&mut reply).await.map_err(|e| format!("no reply: {e}"))?;
        reply.truncate(n.min(self.wanted()));
        Ok(reply)
    }
}

async fn tls_connect(
    host: &str,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    use rustls::pki_types::ServerName;
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::from(addr.ip()));
    let handshake = tokio_rustls::TlsConnector::from(tls_config()).connect(name, stream).await;
    handshake.map_err(|e| format!("TLS handshake with {addr}: {e}"))
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts whatever certificate the backend presents (see the module comment).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
