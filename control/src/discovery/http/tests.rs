//! The client against canned HTTP answers on a unix socket and on loopback TLS.

use super::*;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

/// A socket in a fresh directory, removed with it.
struct Socket {
    dir: PathBuf,
    path: PathBuf,
}

impl Socket {
    fn new(name: &str) -> Socket {
        let dir = std::env::temp_dir().join(format!("betwixt-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        Socket { dir, path }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one request head.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Answers the first connection on `socket` with `chunks` (written one by one, 20 ms apart)
/// and returns the request head it got.
fn answer_once(socket: &Socket, chunks: Vec<Vec<u8>>) -> tokio::task::JoinHandle<String> {
    let listener = UnixListener::bind(&socket.path).unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = read_head(&mut stream).await;
        for chunk in chunks {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        head
    })
}

fn unix(socket: &Socket) -> Endpoint {
    Endpoint::parse_with("x", &socket.url(), &[Scheme::Unix]).unwrap()
}

#[tokio::test]
async fn get_over_a_unix_socket_with_headers() {
    let socket = Socket::new("get");
    let served = answer_once(
        &socket,
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Index: 7\r\n\r\nhello".to_vec()],
    );
    let endpoint = unix(&socket).with_bearer("t", "s3cret").unwrap();
    let answer = endpoint.get_path("/v1.41/containers/json?all=0").await.unwrap();
    assert_eq!(
        (&answer.body[..], answer.headers.get("x-index").unwrap().as_bytes()),
        (&b"hello"[..], &b"7"[..])
    );
    let head = served.await.unwrap();
    assert!(head.starts_with("GET /v1.41/containers/json?all=0 HTTP/1.1\r\n"), "{head}");
    let head = head.to_lowercase();
    assert!(
        head.contains("host: localhost\r\n") && head.contains("authorization: bearer s3cret\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn errors_name_the_url_and_what_the_server_said() {
    let socket = Socket::new("error");
    let body = "{\"message\":\"page not found\"}";
    let reply = format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    answer_once(&socket, vec![reply.into_bytes()]);
    let e = unix(&socket).get_path("/nope").await.unwrap_err();
    assert!(e.contains(&socket.url()) && e.contains("404") && e.contains("page not found"), "{e}");
    let missing = Socket::new("missing");
    let e = unix(&missing).get_path("/").await.unwrap_err();
    assert!(e.starts_with("cannot connect to unix://"), "{e}");
    let e = Endpoint::parse("x", "").unwrap_err();
    assert!(e.message.contains("http:// or https://"), "{}", e.message);
}

#[tokio::test]
async fn bodies_beyond_the_bound_fail() {
    let socket = Socket::new("huge");
    let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1).into_bytes();
    reply.resize(reply.len() + MAX_BODY + 1, b'x');
    answer_once(&socket, vec![reply]);
    let e = unix(&socket).get_path("/").await.unwrap_err();
    assert!(e.contains("reading the answer"), "{e}");
}

#[tokio::test]
async fn streams_yield_lines_as_they_come() {
    let socket = Socket::new("stream");
    let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len()).into_bytes();
    answer_once(
        &socket,
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            chunk("{\"a\":1}\n{\"b\""),
            chunk(":2}\r\n\n  \n"),
            chunk("[1,[2]]\nnot json\n"),
            chunk(&format!("{}\n", "[".repeat(100))),
            chunk("last"),
            b"0\r\n\r\n".to_vec(),
        ],
    );
    let mut lines = unix(&socket).stream("/events", 64).await.unwrap();
    let json = lines.next_json().await.unwrap().unwrap();
    assert_eq!(json.to_string(), "{\"a\":1}");
    assert_eq!(lines.next_json().await.unwrap().unwrap().to_string(), "{\"b\":2}");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), b"[1,[2]]");
    let e = lines.next_json().await.unwrap_err();
    assert!(e.contains("no JSON"), "{e}");
    assert_eq!(lines.next_line().await.unwrap(), None, "an error ends the stream");

    let socket = Socket::new("stream-long");
    let long = format!("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "y".repeat(100));
    answer_once(&socket, vec![long.into_bytes()]);
    let mut lines = unix(&socket).stream("/", 64).await.unwrap();
    assert!(lines.next_line().await.unwrap_err().contains("longer than 64"));

    let socket = Socket::new("stream-deep");
    let deep = format!("{}\n", "[".repeat(100));
    answer_once(
        &socket,
        vec![format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{deep}", deep.len()).into_bytes()],
    );
    let mut lines = unix(&socket).stream("/", 1000).await.unwrap();
    assert!(lines.next_json().await.unwrap_err().contains("deeper"));

    let socket = Socket::new("stream-end");
    answer_once(&socket, vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast".to_vec()]);
    let mut lines = unix(&socket).stream("/", 64).await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), b"last", "a last line without newline");
    assert_eq!(lines.next_line().await.unwrap(), None);
}

/// A loopback HTTPS server with a certificate for `name`, answering `ok` to each request
/// whose head carries a client certificate when `want_client` is set; returns its port and the
/// certificate's PEM.
async fn https_server(
    name: &str,
    client_ca: Option<rustls::pki_types::CertificateDer<'static>>,
) -> (u16, String) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(roots.into()).build().unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(vec![certified.cert.der().clone()], key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                read_head(&mut tls).await;
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, certified.cert.pem())
}

#[tokio::test]
async fn https_verifies_with_the_given_ca_or_not_at_all() {
    let (port, pem) = https_server("localhost", None).await;
    let dir = Socket::new("tls");
    let ca = dir.dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let keys = tls::Keys { ca: "ca", cert: "cert", key: "key" };
    let url = format!("https://localhost:{port}/");
    let with =
        |files: tls::Files| Endpoint::parse("e", &url).unwrap().with_tls(tls::client(&files, &keys).unwrap());

    let verified = with(tls::Files { ca: ca.to_str(), ..tls::Files::default() });
    assert_eq!(&verified.get().await.unwrap()[..], b"ok");
    // The system's CAs do not know a self-signed certificate.
    let e = Endpoint::parse("e", &url).unwrap().get().await.unwrap_err();
    assert!(e.contains("cannot connect to https://localhost"), "{e}");
    let any = with(tls::Files { ignore_verify: true, ..tls::Files::default() });
    assert_eq!(&any.get().await.unwrap()[..], b"ok");
    // The name checked is the URL's host: 127.0.0.1 is not in the certificate.
    let by_ip = Endpoint::parse("e", &format!("https://127.0.0.1:{port}/")).unwrap();
    assert!(by_ip
        .with_tls(tls::client(&tls::Files { ca: ca.to_str(), ..tls::Files::default() }, &keys).unwrap())
        .get()
        .await
        .is_err());

    let e = tls::client(&tls::Files { ca: Some("/nonexistent.pem"), ..tls::Files::default() }, &keys)
        .unwrap_err();
    assert_eq!(e.field, "ca");
    let e = tls::client(&tls::Files { cert: ca.to_str(), ..tls::Files::default() }, &keys).unwrap_err();
    assert_eq!(e.field, "key", "{}", e.message);
}

#[tokio::test]
async fn https_with_a_client_certificate() {
    let client = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
    let (port, pem) = https_server("localhost", Some(client.cert.der().clone())).await;
    let dir = Socket::new("mtls");
    let write = |name: &str, text: String| {
        let path = dir.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", pem),
        write("c.pem", client.cert.pem()),
        write("k.pem", client.key_pair.serialize_pem()),
    );
    let keys = tls::Keys::same("e");
    let url = format!("https://localhost:{port}/");
    let files = tls::Files { ca: Some(&ca), cert: Some(&cert), key: Some(&key), ignore_verify: false };
    let endpoint = Endpoint::parse("e", &url).unwrap().with_tls(tls::client(&files, &keys).unwrap());
    assert_eq!(&endpoint.get().await.unwrap()[..], b"ok");
    let without = tls::Files { ca: Some(&ca), ..tls::Files::default() };
    let endpoint = Endpoint::parse("e", &url).unwrap().with_tls(tls::client(&without, &keys).unwrap());
    assert!(endpoint.get().await.is_err(), "the server wants a client certificate");
}

/// The request heads a test server got, in order.
type Heads = Arc<std::sync::Mutex<Vec<String>>>;

/// A loopback server that reads each connection's request head, records it, and hands the
/// connection and the head to `answer`. Returns its port and the heads.
async fn recording<F, A>(answer: F) -> (u16, Heads)
where
    F: Fn(tokio::net::TcpStream, String) -> A + Send + 'static,
    A: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Heads::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let head = read_head(&mut stream).await;
            seen.lock().unwrap().push(head.clone());
            tokio::spawn(answer(stream, head));
        }
    });
    (port, heads)
}

/// A loopback HTTP server answering each request by its path from `answers` (status line
/// and headers; no body unless the headers say so), recording the request heads it got.
async fn answering(answers: Vec<(&'static str, String)>) -> (u16, Heads) {
    recording(move |mut stream, head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let reply = answers.iter().find(|(p, _)| *p == path).map(|(_, r)| r.clone());
        let reply = reply.unwrap_or_else(|| "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into());
        async move {
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    })
    .await
}

#[tokio::test]
async fn get_follows_redirects_as_gos_client_does() {
    let list = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n127.0.0.1:8080\n".to_string();
    let (other, other_heads) = answering(vec![("/list", list)]).await;
    let moved = |status: &str, location: &str| {
        format!("HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
    };
    let (port, heads) = answering(vec![
        // A relative reference, then one to another server (whose token must not follow).
        ("/a/b", moved("302 Found", "c?x=1#frag")),
        ("/a/c?x=1", moved("308 Permanent Redirect", &format!("http://127.0.0.1:{other}/list"))),
        ("/loop", moved("307 Temporary Redirect", "/loop")),
        ("/nowhere", "HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\n\r\n".into()),
        ("/not-followed", moved("300 Multiple Choices", "/a/b")),
    ])
    .await;
    let endpoint = |path: &str| {
        Endpoint::parse("x", &format!("http://127.0.0.1:{port}{path}"))
            .unwrap()
            .with_bearer("t", "tok")
            .unwrap()
    };
    assert_eq!(&endpoint("/a/b").get().await.unwrap()[..], b"127.0.0.1:8080\n");
    let paths: Vec<String> =
        heads.lock().unwrap().iter().map(|h| h.lines().next().unwrap().to_string()).collect();
    assert_eq!(paths, ["GET /a/b HTTP/1.1", "GET /a/c?x=1 HTTP/1.1"]);
    assert!(heads.lock().unwrap().iter().all(|h| h.to_lowercase().contains("authorization: bearer tok")));
    let other_head = other_heads.lock().unwrap()[0].to_lowercase();
    assert!(!other_head.contains("authorization"), "{other_head}");
    assert!(other_head.contains(&format!("host: 127.0.0.1:{other}")), "{other_head}");

    // Ten redirects are followed, the eleventh is not.
    heads.lock().unwrap().clear();
    let e = endpoint("/loop").get().await.unwrap_err();
    assert!(e.contains("stopped after 10 redirects"), "{e}");
    assert_eq!(heads.lock().unwrap().len(), MAX_REDIRECTS + 1);

    // A redirect status without Location, and a 3xx Go does not follow, fail as non-2xx.
    let e = endpoint("/nowhere").get().await.unwrap_err();
    assert!(e.contains("301"), "{e}");
    let e = endpoint("/not-followed").get().await.unwrap_err();
    assert!(e.contains("300"), "{e}");
    // Only get() follows: the API clients of the other kinds see the redirect as a failure.
    let e = endpoint("/").get_path("/a/b").await.unwrap_err();
    assert!(e.contains("302"), "{e}");
}

fn proxies(vars: &[(&'static str, String)]) -> Arc<Proxies> {
    let vars = vars.to_vec();
    Arc::new(Proxies::from_vars(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())))
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_with_the_whole_url() {
    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n127.0.0.1:8080\n".to_string();
    let (proxy, heads) = answering(vec![("http://lists.test:8080/list?v=1", reply)]).await;
    let endpoint = Endpoint::parse("x", "http://lists.test:8080/list?v=1")
        .unwrap()
        .with_proxies(proxies(&[("HTTP_PROXY", format!("http://lb:s%40cret@127.0.0.1:{proxy}"))]));
    assert_eq!(&endpoint.get().await.unwrap()[..], b"127.0.0.1:8080\n");
    let head = heads.lock().unwrap()[0].to_lowercase();
    assert!(head.starts_with("get http://lists.test:8080/list?v=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("host: lists.test:8080\r\n"), "{head}");
    // lb:s@cret
    assert!(head.contains("proxy-authorization: basic bgi6c0bjcmv0\r\n"), "{head}");

    // NO_PROXY sends it directly, where lists.test does not resolve.
    let direct = Endpoint::parse("x", "http://lists.test:8080/list?v=1").unwrap().with_proxies(proxies(&[
        ("HTTP_PROXY", format!("127.0.0.1:{proxy}")),
        ("NO_PROXY", "lists.test".into()),
    ]));
    assert!(direct.get().await.is_err());
    assert_eq!(heads.lock().unwrap().len(), 1);
}

/// A proxy answering `CONNECT` with `status`, and with `200` tunnelling to `127.0.0.1:to`;
/// returns its port and the request heads it got.
async fn connect_proxy(status: &'static str, to: u16) -> (u16, Heads) {
    recording(move |mut client, _| async move {
        let _ = client.write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes()).await;
        if status.starts_with("200") {
            let mut server = tokio::net::TcpStream::connect(("127.0.0.1", to)).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    })
    .await
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let (server, pem) = https_server("lists.test", None).await;
    let (proxy, heads) = connect_proxy("200 Connection established", server).await;
    let dir = Socket::new("tunnel");
    let ca = dir.dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let config =
        tls::client(&tls::Files { ca: ca.to_str(), ..tls::Files::default() }, &tls::Keys::same("e")).unwrap();
    let endpoint = |proxy: u16| {
        Endpoint::parse("x", "https://lists.test/")
            .unwrap()
            .with_tls(config.clone())
            .with_proxies(proxies(&[("HTTPS_PROXY", format!("127.0.0.1:{proxy}"))]))
    };
    // TLS runs end to end through the tunnel: the certificate names lists.test.
    assert_eq!(&endpoint(proxy).get().await.unwrap()[..], b"ok");
    let head = heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("CONNECT lists.test:443 HTTP/1.1\r\nHost: lists.test:443\r\n"), "{head}");

    let (refusing, _) = connect_proxy("403 Forbidden", server).await;
    let e = endpoint(refusing).get().await.unwrap_err();
    assert!(
        e.contains("proxy refused CONNECT: HTTP/1.1 403 Forbidden") && e.contains("through 127.0.0.1"),
        "{e}"
    );
}
