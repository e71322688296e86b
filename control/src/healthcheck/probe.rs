//! `probe`: send `probe_send` to the backend over tcp, udp or tls and compare the start of the
//! reply with `probe_recv`, either as bytes (`starts_with`) or as a regular expression
//! (`regexp`, searched in the first `probe_recv_len` bytes).
//!
//! Over tls the backend's certificate is verified as gobetween's Go client verifies it: it must
//! chain to the system's CAs (found as Go finds them, `SSL_CERT_FILE` and `SSL_CERT_DIR`
//! included) and name the backend's host (a name, or an IP address for a backend given by
//! address).

use super::escapes::unescape;
use super::{shown, Failure};
use crate::config::model::Healthcheck;
use regex::bytes::{Regex, RegexBuilder};
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// Over tls: how the backend's certificate is verified.
    tls: Option<Arc<rustls::ClientConfig>>,
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
        let tls = (transport == Transport::Tls).then(|| verifying(system_roots()));
        Ok(Probe { transport, send, expect, recv_len, tls })
    }

    /// This probe, trusting `roots` instead of the system's CAs.
    #[cfg(test)]
    pub fn trusting(self, roots: rustls::RootCertStore) -> Probe {
        Probe { tls: self.tls.map(|_| verifying(roots)), ..self }
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
                Transport::Tls => match tls_connect(self.tls.clone(), host, addr).await {
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
    config: Option<Arc<rustls::ClientConfig>>,
    host: &str,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    use rustls::pki_types::ServerName;
    let config = config.ok_or("no TLS settings")?;
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    // The host as the backend line gives it, an address or a name, is what the certificate
    // must name (Go's `tls.Dial` takes it from the address it dials).
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .unwrap_or_else(|_| ServerName::from(addr.ip()));
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream).await;
    handshake.map_err(|e| format!("TLS handshake with {addr}: {e}"))
}

/// The system's CAs; none found leaves the store empty, and every handshake then fails, as in
/// Go.
fn system_roots() -> rustls::RootCertStore {
    crate::tls::roots(None).unwrap_or_else(|_| rustls::RootCertStore::empty())
}

/// A client configuration verifying the backend's certificate against `roots`.
fn verifying(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
