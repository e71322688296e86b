//! `probe` checks over tcp, udp and tls against small real servers on loopback.

use super::super::{check, Target};
use super::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const REPLY: &[u8] = b"PONG\xaa\n version=42\n";

fn probe_settings(protocol: &str, extra: impl FnOnce(&mut Healthcheck)) -> CheckSettings {
    let mut raw = Healthcheck {
        kind: HealthcheckKind::Probe,
        probe_protocol: Some(protocol.into()),
        probe_send: Some(r"PING\xFF\n".into()),
        probe_recv: Some(r"PONG\xAA\n".into()),
        timeout: Some(crate::config::GoDuration(Duration::from_secs(2)).into()),
        ..Default::default()
    };
    extra(&mut raw);
    let settings = CheckSettings::from_section(&raw).unwrap();
    assert!(settings.probe.is_some(), "probe section {raw:?} should be valid");
    settings
}

fn target(addr: SocketAddr) -> Target {
    Target { host: "localhost".into(), port: addr.port(), addrs: vec![addr] }
}

/// Answers `REPLY` to every connection that sends exactly `PING\xff\n`, else closes.
async fn tcp_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 6];
                if stream.read_exact(&mut request).await.is_ok() && &request == b"PING\xff\n" {
                    let _ = stream.write_all(REPLY).await;
                }
            });
        }
    });
    addr
}

/// A change to a probe section, applied before a check.
type Tweak = Box<dyn FnOnce(&mut Healthcheck)>;

/// Different strategies and expectations against one server: (settings tweak, expected result).
fn cases() -> Vec<(Tweak, bool)> {
    vec![
        (Box::new(|_| {}), true),
        (Box::new(|r| r.probe_recv = Some("PONG!".into())), false),
        (Box::new(|r| r.probe_send = Some("HELLO\\n".into())), false),
        // The same bytes in Go's other escapes, as gobetween reads them.
        (
            Box::new(|r| {
                r.probe_send = Some(r"\120ING\377\012".into());
                r.probe_recv = Some(r"PON\u0047\xAA\n".into());
            }),
            true,
        ),
        (
            Box::new(|r| {
                r.probe_strategy = Some("regexp".into());
                r.probe_recv = Some(r"version=\d+".into());
                r.probe_recv_len = Some(64);
            }),
            true,
        ),
        (
            Box::new(|r| {
                r.probe_strategy = Some("regexp".into());
                r.probe_recv = Some(r"^PONG\xAA".into());
                r.probe_recv_len = Some(8);
            }),
            true,
        ),
        (
            Box::new(|r| {
                r.probe_strategy = Some("regexp".into());
                r.probe_recv = Some(r"version=\d+".into());
                r.probe_recv_len = Some(8); // the version is beyond the bytes read
            }),
            false,
        ),
    ]
}

#[tokio::test]
async fn tcp() {
    let addr = tcp_server().await;
    for (i, (tweak, expected)) in cases().into_iter().enumerate() {
        assert_eq!(
            check(&probe_settings("tcp", tweak), &target(addr)).await.unwrap().is_ok(),
            expected,
            "case {i}"
        );
    }
    // Bound but not listening: connects are refused, and no other socket can take the port
    // meanwhile (a listener closed instead frees it for whichever test binds next).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = held.local_addr().unwrap();
    let why = check(&probe_settings("tcp", |_| {}), &target(closed)).await.unwrap().unwrap_err();
    assert!(why.starts_with(&format!("connect to {closed}: ")), "{why}");
}

#[tokio::test]
async fn udp() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut request = [0u8; 64];
        while let Ok((n, from)) = socket.recv_from(&mut request).await {
            if &request[..n] == b"PING\xff\n" {
                let _ = socket.send_to(REPLY, from).await;
            }
        }
    });
    for (i, (tweak, expected)) in cases().into_iter().enumerate() {
        let mut settings = probe_settings("udp", tweak);
        // An unanswered datagram is only noticed by the timeout.
        settings.timeout = Duration::from_millis(300);
        assert_eq!(check(&settings, &target(addr)).await.unwrap().is_ok(), expected, "case {i}");
    }
}

/// The certificate is verified as gobetween's Go client verifies it: a self-signed one (here
/// the backend's own CA) passes only when trusted, and must name the backend's host.
#[tokio::test]
async fn tls_verifies_the_backends_certificate() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let mut trusted = rustls::RootCertStore::empty();
    trusted.add(cert.clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut request = [0u8; 6];
                if tls.read_exact(&mut request).await.is_ok() && &request == b"PING\xff\n" {
                    let _ = tls.write_all(REPLY).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let trusting = |tweak: Tweak| {
        let mut settings = probe_settings("tls", tweak);
        settings.probe = settings.probe.map(|p| p.trusting(trusted.clone()));
        settings
    };
    for (i, (tweak, expected)) in cases().into_iter().enumerate() {
        assert_eq!(check(&trusting(tweak), &target(addr)).await.unwrap().is_ok(), expected, "case {i}");
    }
    // Not trusted (the system's CAs), or trusted for another name: the handshake fails.
    let why = check(&probe_settings("tls", |_| {}), &target(addr)).await.unwrap().unwrap_err();
    assert!(why.contains("TLS handshake") && why.contains("UnknownIssuer"), "{why}");
    let other = Target { host: "other.test".into(), ..target(addr) };
    let why = check(&trusting(Box::new(|_| {})), &other).await.unwrap().unwrap_err();
    assert!(why.contains("TLS handshake") && why.contains("not valid for name \"other.test\""), "{why}");
    // A plain TCP server is not a TLS one.
    let plain = tcp_server().await;
    assert!(check(&trusting(Box::new(|_| {})), &target(plain)).await.unwrap().is_err());
}
