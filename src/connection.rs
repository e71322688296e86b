//! One client connection, from accept to close, as named steps (`Stage`): read the client's
//! PROXY protocol header (when accepted), admit (access rules, limits), peek at the TLS
//! ClientHello's server name (SNI routing), connect (backend choice with bounded retries,
//! connect timeout), send the PROXY header and the client bytes read so far, then the byte
//! transfer with idle timeouts and faults passed on (see `transfer`). A tls server terminates
//! the client's TLS after admitting it (`Handshake`) and routes on the handshake's server name;
//! with `[backends_tls]` the connect step includes the TLS handshake with the backend. A server
//! without `accept_proxy_protocol`, `sni`, `proxy_protocol`, `tls` and `backends_tls` skips
//! those steps without a system call.
//! Counters are released by guards, so every exit path (error, timeout, cancellation) leaves
//! them right.

use crate::access_log::Trace;
use crate::client_hello::{self, Peek};
use crate::proxy_protocol::{self, Addresses, Command, Header, Parsed};
use crate::tls::{Rewind, Stream};
use crate::transfer::{self, End as Ended, Ending, Meters, Side};
use betwixt_control::access_log::{self, End};
use betwixt_control::balance::{Candidates, Picker};
use betwixt_control::config::GoDuration;
use betwixt_control::config::ServerSettings;
use betwixt_control::proxy::AcceptSettings;
use betwixt_control::snapshot::{Backend, ServerSnapshot};
use betwixt_control::stats::{ConnectError, Counters, Slot};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::{LazyConfigAcceptor, TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;
use rustls::server::Acceptor;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many different backends one connection tries before giving up.
const MAX_CONNECT_ATTEMPTS: usize = 3;

/// How long a client of a tls server has to complete its TLS handshake, and a backend its
/// handshake with `[backends_tls]` (within the connect timeout, when that is shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Holds one place in a counter set (active count and, when limited, the cross-shard gauge).
/// `total` is counted apart (`count_total`): for a backend only once it is connected, as
/// gobetween counts it.
struct Occupancy<'a> {
    counters: &'a Counters,
    shard: usize,
    limit: u32,
}

impl<'a> Occupancy<'a> {
    /// Takes a place under `limit`; `None` when the limit is reached.
    fn enter(counters: &'a Counters, shard: usize, limit: u32) -> Option<Self> {
        if !counters.try_acquire(limit) {
            return None;
        }
        Slot::add(&counters.shard(shard).active, 1);
        Some(Occupancy { counters, shard, limit })
    }

    fn slot(&self) -> &Slot {
        self.counters.shard(self.shard)
    }

    fn count_total(&self) {
        Slot::add(&self.slot().total, 1);
    }
}

impl Drop for Occupancy<'_> {
    fn drop(&mut self) {
        Slot::sub(&self.slot().active, 1);
        self.counters.release(self.limit);
    }
}

/// The steps of a connection, in order. Each is a small function below; each failure names
/// its step and side, and `report` alone counts and logs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `[accept_proxy_protocol]`: the client's PROXY protocol header.
    ReadProxy,
    /// Access rules and the server's `max_connections`.
    Admit,
    /// `[sni]`: the server name of the client's TLS ClientHello.
    PeekSni,
    /// `[tls]` (`protocol = "tls"`): the client's TLS handshake.
    Handshake,
    /// Choosing a backend and connecting to it.
    Connect,
    /// `[proxy_protocol]`, and the client bytes read in the steps before.
    SendProxy,
    Transfer,
}

impl Stage {
    /// The name access log lines give it.
    fn name(self) -> &'static str {
        match self {
            Stage::ReadProxy => "read_proxy",
            Stage::Admit => "admit",
            Stage::PeekSni => "peek_sni",
            Stage::Handshake => "handshake",
            Stage::Connect => "connect",
            Stage::SendProxy => "send_proxy",
            Stage::Transfer => "transfer",
        }
    }
}

/// Why a connection ended before its transfer ended cleanly.
#[derive(Debug)]
pub struct Failure {
    pub stage: Stage,
    pub side: Side,
    /// What kind of end it is, for the access log.
    pub end: End,
    pub why: String,
}

impl Failure {
    fn new(stage: Stage, side: Side, why: impl Into<String>) -> Failure {
        Failure { stage, side, end: End::Error, why: why.into() }
    }

    /// A failed socket operation: reset, time-out or error by its kind.
    fn io(stage: Stage, side: Side, e: &io::Error, why: impl Into<String>) -> Failure {
        Failure { end: End::of(e), ..Failure::new(stage, side, why) }
    }

    fn ending(self, end: End) -> Failure {
        Failure { end, ..self }
    }
}

/// Serves one accepted client until its connection ends.
///
/// A plain function, not an `async fn`: an async fn keeps each argument in its future apart from
/// the local it is moved into, so the client's socket would be stored once more by every async
/// fn it is passed down through, for the connection's whole life. Here it is moved once, into the
/// slot the steps use in place.
pub fn handle(
    shard: usize,
    snapshot: Arc<ServerSnapshot>,
    picker: Rc<RefCell<Picker>>,
    client: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> {
    let mut client = Some(Stream::Plain(client));
    async move {
        // Dropped last: a connection dropped mid-step (aborted) is logged too.
        let mut trace = Trace::begin(&snapshot, peer);
        let mut source = peer;
        let served = serve(shard, &snapshot, &picker, &mut client, &peer, &mut source, &mut trace).await;
        // Closed before the connection is counted and logged, as the backend's socket was.
        drop(client.take());
        match served {
            Ok(()) => trace.end(Stage::Transfer.name(), End::Done, None, None),
            Err(failure) => report(shard, &snapshot, source, failure, &mut trace),
        }
    }
}

/// The client's socket while it is plain: from accept until the TLS handshake, if any, takes it.
fn plain(client: &mut Option<Stream>) -> &mut TcpStream {
    match client {
        Some(Stream::Plain(socket)) => socket,
        _ => unreachable!("only the steps before the handshake read the plain socket"),
    }
}

fn side(side: Side) -> access_log::Side {
    match side {
        Side::Client => access_log::Side::Client,
        Side::Backend => access_log::Side::Backend,
    }
}

/// The one place a failed connection is counted and logged. Every step before the backend
/// is connected refuses the client (the server's `refused` count); later ones end a served
/// connection.
fn report(shard: usize, snapshot: &ServerSnapshot, client: SocketAddr, failure: Failure, trace: &mut Trace) {
    let Failure { stage, side: by, end, why } = failure;
    if matches!(stage, Stage::ReadProxy | Stage::Admit | Stage::PeekSni | Stage::Handshake | Stage::Connect) {
        Slot::add(&snapshot.counters.shard(shard).refused, 1);
    }
    let name = &snapshot.settings.name;
    if stage == Stage::ReadProxy {
        // Only an upstream balancer talks to such a server: a bad header is its misconfiguration
        // (or someone else reaching the port), worth a warning, limited so it cannot flood.
        betwixt_control::log_limited!(
            log::Level::Warn,
            "server {name}: {client}: {stage:?} ({by:?}): {why}; connection closed"
        );
    } else {
        log::debug!("server {name}: {client}: {stage:?} ({by:?}): {why}");
    }
    trace.end(stage.name(), end, Some(side(by)), Some(why));
}

/// Runs the steps. `client` holds the client's plain socket, and the TLS stream over it once
/// the handshake is done; `source` becomes the client's address as the PROXY header gives it;
/// `trace` notes what the access log line says.
///
/// A plain function returning an `async move` block, as `handle`: an async fn would store its
/// arguments twice in the connection's future.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve<'a>(
    shard: usize,
    snapshot: &'a ServerSnapshot,
    picker: &'a RefCell<Picker>,
    client: &'a mut Option<Stream>,
    peer: &'a SocketAddr,
    source: &'a mut SocketAddr,
    trace: &'a mut Trace,
) -> impl Future<Output = Result<(), Failure>> + 'a {
    async move {
        let settings = &snapshot.settings;
        // Boxed: the steps before the transfer need room only for a moment (the box is freed once
        // the backend is connected), while the connection's future carries its room for its life.
        let Reached { server_place, backend, mut upstream, backend_place } =
            Box::pin(reach_backend(shard, snapshot, picker, client, *peer, source, trace)).await?;
        // Made again where each is used rather than held across the transfer, which every idle
        // connection waits in: a few bytes less in each connection's future.
        let meters = || meters_of(&server_place, &backend_place, trace);
        let ending = || ending_of(settings);
        let Some(downstream) = client else {
            unreachable!("the client's stream is back after its handshake")
        };
        let end = match (&mut *downstream, &mut upstream) {
            // Plain on both sides: the splicing transfer; under `[runtime] forwarding =
            // "kernel"` it stops quiet after a few exchanges and the kernel takes over.
            (Stream::Plain(client), Stream::Plain(upstream)) => {
                // Nothing held across the transfer but what it takes: every idle connection
                // carries this future.
                let end = match crate::kernel::active().map(|k| k.quiet_after()) {
                    // `kernel_forwarding_after_reads = 0`: straight to the kernel.
                    Some(0) => Ended::Quiet,
                    quiet_after => {
                        transfer::bidirectional(
                            client,
                            upstream,
                            meters(),
                            ending(),
                            quiet_after.unwrap_or(0),
                        )
                        .await
                    }
                };
                match (end, crate::kernel::active()) {
                    // Boxed: only connections handed over carry its room.
                    (Ended::Quiet, Some(kernel)) => {
                        Box::pin(crate::kernel::take_over(kernel, client, upstream, meters(), ending())).await
                    }
                    (end, _) => end,
                }
            }
            _ => Box::pin(crate::tls::bidirectional(downstream, &mut upstream, meters(), ending())).await,
        };
        match end {
            // `Quiet` comes only from a transfer asked to stop for kernel forwarding, which then
            // carries the connection on; it does not end here.
            Ended::Done | Ended::Quiet => Ok(()),
            Ended::Idle(side) => {
                Err(Failure::new(Stage::Transfer, side, at(backend, "idle timeout".into())).ending(End::Idle))
            }
            // The other side is reset as the sockets drop (the backend's here, the client's
            // in `handle`).
            Ended::Failed(side, e) => Err(Failure::io(Stage::Transfer, side, &e, at(backend, e.to_string()))),
        }
    }
}

/// Where `reach_backend` leaves a connection: admitted, its backend connected and sent what
/// it gets first.
struct Reached<'a> {
    server_place: Occupancy<'a>,
    backend: &'a Arc<Backend>,
    upstream: Stream,
    backend_place: Occupancy<'a>,
}

/// The byte counters a connection's transfer adds to: its server's, its backend's and its own.
fn meters_of<'m>(server: &'m Occupancy, backend: &'m Occupancy, trace: &'m Trace) -> Meters<'m> {
    Meters { server: server.slot(), backend: backend.slot(), connection: &trace.moved }
}

/// The server's idle timeouts and `half_close`, for the transfer.
fn ending_of(settings: &ServerSettings) -> Ending {
    Ending {
        idle: [settings.client_idle_timeout, settings.backend_idle_timeout],
        half_close: settings.half_close,
    }
}

/// A failure's reason with the backend it happened with.
fn at(backend: &Backend, why: String) -> String {
    format!("{why} (backend {})", backend.spec.address())
}

/// The steps before the transfer: read the PROXY header, admit, handshake or peek at the SNI,
/// connect the backend and send it what it gets first. Its own future, boxed by `serve`, so
/// that what only these steps use (the client's early bytes, the header, the candidates,
/// connecting) takes no room in the connection's future while it transfers, which is how every
/// idle connection waits.
async fn reach_backend<'a>(
    shard: usize,
    snapshot: &'a ServerSnapshot,
    picker: &RefCell<Picker>,
    client: &mut Option<Stream>,
    peer: SocketAddr,
    source: &mut SocketAddr,
    trace: &mut Trace,
) -> Result<Reached<'a>, Failure> {
    let settings = &snapshot.settings;
    // Client bytes read by the steps before the transfer; the backend gets them first.
    let mut early = Vec::new();
    let received = match &settings.accept_proxy {
        // Boxed, as every step only some servers take: this future is as large as its largest
        // step (a TLS handshake's is over 6 KiB), and every connection of every server would
        // allocate that size while it connects.
        Some(accept) => {
            let header = Box::pin(read_proxy(plain(client), accept, &mut early)).await?;
            believed(accept, &settings.name, peer, header)
        }
        None => None,
    };
    if let Some(from) = received.and_then(|header| header.source()) {
        *source = from;
        trace.client(from);
    }
    let server_place = admit(shard, snapshot, *source)?;
    let tls = settings.tls.as_ref();
    // Only a PROXY header needs it: no system call otherwise.
    let local =
        match settings.send_proxy {
            Some(_) => Some(plain(client).local_addr().map_err(|e| {
                Failure::new(Stage::SendProxy, Side::Client, format!("no local address: {e}"))
            })?),
            None => None,
        };
    let candidates = match tls.and_then(|tls| tls.server.clone()) {
        // The ClientHello is read by the handshake; SNI routes on its server name.
        Some(config) => {
            let challenge = tls.and_then(|tls| tls.acme_challenge.clone());
            let Some(Stream::Plain(socket)) = client.take() else {
                unreachable!("the client is plain until its handshake")
            };
            let socket = Rewind::new(std::mem::take(&mut early), socket);
            let stream = Box::pin(handshake(config, challenge, socket)).await?;
            let name = stream.get_ref().1.server_name();
            if trace.is_logged() {
                trace.sni(name.map(Box::from));
            }
            let candidates = snapshot.sni.as_ref().map_or(Candidates::All, |routes| routes.candidates(name));
            *client = Some(Stream::Server(Box::new(stream)));
            candidates
        }
        None => match (&snapshot.sni, &settings.sni) {
            (Some(routes), Some(sni)) => {
                let name = Box::pin(peek_sni(plain(client), sni.read_timeout, &mut early)).await?;
                let candidates = routes.candidates(name.as_deref());
                if trace.is_logged() {
                    trace.sni(name.map(String::into_boxed_str));
                }
                candidates
            }
            _ => Candidates::All,
        },
    };
    // What the backend gets first, made now so that what it is made of is not kept for the
    // connection's life.
    let first = opening(settings, local, peer, received, &early);
    let client_bytes = early.len();
    drop(early);
    let backends_tls = tls.and_then(|tls| tls.backends.as_ref());
    let (backend, mut upstream, backend_place) =
        connect_backend(shard, snapshot, picker, source.ip(), &candidates, backends_tls).await.ok_or_else(
            || Failure::new(Stage::Connect, Side::Backend, "no backend available").ending(End::NoBackend),
        )?;
    trace.backend(backend);
    if let Stream::Plain(socket) = &upstream {
        // The client's socket inherited TCP_NODELAY from the listener (see `bind`): one system
        // call fewer per connection.
        socket.set_nodelay(true).map_err(|e| {
            Failure::new(
                Stage::Connect,
                Side::Backend,
                at(backend, format!("cannot set socket options: {e}")),
            )
        })?;
        // The backend's FIN is then seen with its last reply (see `direction`); without it
        // (kernels before 4.18), one read later.
        let _ = betwixt_control::bind::report_remaining(std::os::fd::AsRawFd::as_raw_fd(socket));
    }
    if !first.is_empty() {
        let meters = meters_of(&server_place, &backend_place, trace);
        send_first(&mut upstream, first, client_bytes, &meters)
            .await
            .map_err(|e| Failure::io(Stage::SendProxy, Side::Backend, &e, at(backend, e.to_string())))?;
    }
    Ok(Reached { server_place, backend, upstream, backend_place })
}

/// What the backend gets before the transfer: the PROXY header (`[proxy_protocol]`), then
/// the client bytes read early. Empty when there is neither.
fn opening(
    settings: &ServerSettings,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    received: Option<Header>,
    early: &[u8],
) -> Vec<u8> {
    let mut first = Vec::new();
    if let Some(version) = settings.send_proxy {
        let addresses = match received.map(|header| header.command) {
            // Passed on as received, so the backend sees the original client.
            Some(Command::Proxy(Some(addresses))) => addresses,
            // `local` is known whenever a header is sent (see `serve`).
            _ => Addresses::new(peer, local.unwrap_or(peer)),
        };
        proxy_protocol::encode(&Header { version, command: Command::Proxy(Some(addresses)) }, &mut first);
    }
    first.extend_from_slice(early);
    first
}

/// Runs `step`, failing it at `stage` when it takes longer than `limit` (a bound on the whole
/// step, so a client sending a byte now and then cannot stretch it).
async fn within<T>(
    limit: Duration,
    stage: Stage,
    step: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let expired = async {
        glommio::timer::sleep(limit).await;
        let why = format!("nothing complete within {}", GoDuration(limit));
        Err(Failure::new(stage, Side::Client, why).ending(End::Timeout))
    };
    futures_lite::future::or(step, expired).await
}

/// The client's TLS handshake, within `HANDSHAKE_TIMEOUT`. With `challenge` (a server whose
/// ACME certificates are validated by TLS-ALPN-01), the ClientHello is read first: one offering
/// ALPN `acme-tls/1` is the CA's validation, answered with `challenge`'s certificate and then
/// closed; any other goes on with `config`.
async fn handshake(
    config: Arc<rustls::ServerConfig>,
    challenge: Option<Arc<rustls::ServerConfig>>,
    client: Rewind,
) -> Result<futures_rustls::server::TlsStream<Rewind>, Failure> {
    let failed = |e: std::io::Error| {
        Failure::io(Stage::Handshake, Side::Client, &e, format!("TLS handshake failed: {e}"))
    };
    within(HANDSHAKE_TIMEOUT, Stage::Handshake, async {
        let Some(challenge) = challenge else {
            return TlsAcceptor::from(config).accept(client).await.map_err(failed);
        };
        let start = LazyConfigAcceptor::new(Acceptor::default(), client).await.map_err(failed)?;
        if !betwixt_control::acme::wants_challenge(&start.client_hello()) {
            return start.into_stream(config).await.map_err(failed);
        }
        start.into_stream(challenge).await.map_err(failed)?;
        let answered = Failure::new(Stage::Handshake, Side::Client, "ACME TLS-ALPN-01 validation answered");
        Err(answered.ending(End::Done))
    })
    .await
}

/// The header, if `peer` may name the client (`trusted`); a header from another peer is dropped
/// and the peer stays the client.
fn believed(accept: &AcceptSettings, server: &str, peer: SocketAddr, header: Header) -> Option<Header> {
    if accept.trusts(peer.ip()) {
        return Some(header);
    }
    betwixt_control::log_limited!(
        log::Level::Warn,
        "server {server}: PROXY protocol header from {peer}, which is not trusted: its address is not used"
    );
    None
}

/// Reads the client's PROXY protocol header. Bytes read past it go to `early`.
async fn read_proxy(
    client: &mut TcpStream,
    accept: &AcceptSettings,
    early: &mut Vec<u8>,
) -> Result<Header, Failure> {
    let fail = |why: &str| Failure::new(Stage::ReadProxy, Side::Client, why);
    within(accept.read_timeout, Stage::ReadProxy, async {
        let mut buffer = [0u8; proxy_protocol::MAX_HEADER];
        let mut have = 0;
        loop {
            let n = client
                .read(&mut buffer[have..])
                .await
                .map_err(|e| Failure::io(Stage::ReadProxy, Side::Client, &e, e.to_string()))?;
            if n == 0 {
                return Err(fail("closed before the end of its PROXY protocol header").ending(End::Closed));
            }
            have += n;
            match proxy_protocol::parse(&buffer[..have]) {
                Parsed::Done { header, consumed } => {
                    let version = header.version;
                    if !accept.versions.admits(version) {
                        return Err(fail(&format!(
                            "PROXY protocol {version:?} header where {:?} is accepted",
                            accept.versions
                        )));
                    }
                    early.extend_from_slice(&buffer[consumed..have]);
                    return Ok(header);
                }
                Parsed::Invalid(reason) => return Err(fail(&format!("bad PROXY protocol header: {reason}"))),
                // The parser decides within `MAX_HEADER` bytes, so the buffer never fills here.
                Parsed::NeedMore if have == buffer.len() => {
                    return Err(fail("PROXY protocol header too long"))
                }
                Parsed::NeedMore => {}
            }
        }
    })
    .await
}

/// Reads the client's TLS ClientHello into `early` (which may already hold its start) and
/// returns the server name it asks for. What is not a readable ClientHello counts as a client
/// without a name, as in gobetween; its bytes are forwarded all the same.
async fn peek_sni(
    client: &mut TcpStream,
    limit: Duration,
    early: &mut Vec<u8>,
) -> Result<Option<String>, Failure> {
    let fail = |why: String| Failure::new(Stage::PeekSni, Side::Client, why);
    within(limit, Stage::PeekSni, async {
        loop {
            match client_hello::peek(early) {
                Peek::Done(name) => return Ok(name),
                Peek::NotTls(reason) => {
                    log::debug!("no server name: {reason}");
                    return Ok(None);
                }
                Peek::NeedMore => {}
            }
            // The peek decides within `MAX_BYTES`; read in growing steps up to it.
            let start = early.len();
            let room = start.clamp(4096, 16 * 1024).min(client_hello::MAX_BYTES - start);
            early.resize(start + room, 0);
            let read = client.read(&mut early[start..]).await;
            early.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => {
                    return Err(fail("closed before the end of its ClientHello".into()).ending(End::Closed))
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::io(Stage::PeekSni, Side::Client, &e, e.to_string())),
            }
        }
    })
    .await
}

/// Writes `bytes` to the backend; the last `client_bytes` of them are the client's and are
/// counted as such (a PROXY header is not).
async fn send_first(
    upstream: &mut (impl AsyncWrite + Unpin),
    bytes: Vec<u8>,
    client_bytes: usize,
    meters: &Meters<'_>,
) -> io::Result<()> {
    upstream.write_all(&bytes).await?;
    upstream.flush().await?;
    for counter in meters.bytes(true) {
        Slot::add(counter, client_bytes as u64);
    }
    Ok(())
}

/// Access rules (on the client's address, from the PROXY header when there is one), then a
/// place under the server's `max_connections`.
fn admit(shard: usize, snapshot: &ServerSnapshot, client: SocketAddr) -> Result<Occupancy<'_>, Failure> {
    let settings = &snapshot.settings;
    if settings.access.as_ref().is_some_and(|rules| !rules.allows(client.ip())) {
        // Denied clients are closed at once (dropping the stream).
        return Err(Failure::new(Stage::Admit, Side::Client, "denied by access rules").ending(End::Denied));
    }
    let place = Occupancy::enter(&snapshot.counters, shard, settings.max_connections).ok_or_else(|| {
        Failure::new(
            Stage::Admit,
            Side::Client,
            format!("max_connections {} reached", settings.max_connections),
        )
        .ending(End::Limit)
    })?;
    place.count_total();
    Ok(place)
}

/// Picks backends until one accepts the connection, at most `MAX_CONNECT_ATTEMPTS` of them.
/// Counted as gobetween counts a connection: each backend that fails gets one `refused`, and
/// only the backend that connects gets one `total` (`active` holds the place meanwhile, so
/// that `max_connections` and `leastconn` see a connect in progress).
async fn connect_backend<'s>(
    shard: usize,
    snapshot: &'s ServerSnapshot,
    picker: &RefCell<Picker>,
    client: IpAddr,
    candidates: &Candidates<'_>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Option<(&'s Arc<Backend>, Stream, Occupancy<'s>)> {
    let timeout = snapshot.settings.backend_connection_timeout;
    // On the stack: no allocation per connection.
    let mut tried = [0; MAX_CONNECT_ATTEMPTS];
    for attempt in 0..MAX_CONNECT_ATTEMPTS {
        let index = picker.borrow_mut().pick_among(snapshot, client, &tried[..attempt], candidates)?;
        tried[attempt] = index;
        let backend = &snapshot.backends[index];
        let Some(place) = Occupancy::enter(&backend.counters, shard, backend.spec.max_connections) else {
            continue; // filled up by another shard since the pick
        };
        let started = Instant::now();
        let connected = match connect(&backend.addrs, timeout).await {
            Ok(stream) => match tls {
                None => Ok(Stream::Plain(stream)),
                Some(config) => Box::pin(backend_handshake(config, backend, stream, timeout)).await,
            },
            Err(e) => Err((ConnectError::of(&e), e)),
        };
        match connected {
            Ok(stream) => {
                place.count_total();
                place.slot().connect_latency.observe(started.elapsed());
                return Some((backend, stream, place));
            }
            Err((kind, e)) => {
                Slot::add(&place.slot().refused, 1);
                Slot::add(&place.slot().connect_errors[kind as usize], 1);
                // Every client of a dead backend meets this: limited, or it floods the log.
                betwixt_control::log_limited!(
                    log::Level::Warn,
                    "server {}: backend {} failed: {e}",
                    snapshot.settings.name,
                    backend.spec.address()
                );
            }
        }
    }
    None
}

/// `[backends_tls]`: the TLS handshake with a connected backend, verifying its certificate for
/// its `sni=`, else its host.
async fn backend_handshake(
    config: &Arc<rustls::ClientConfig>,
    backend: &Backend,
    stream: TcpStream,
    timeout: Option<Duration>,
) -> Result<Stream, (ConnectError, io::Error)> {
    let tls_error = |e: io::Error| (ConnectError::Tls, e);
    let host = backend.spec.sni.as_deref().unwrap_or(&backend.spec.host);
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        tls_error(io::Error::new(io::ErrorKind::InvalidInput, format!("server name {host:?}: {e}")))
    })?;
    // Set before the handshake so that its flights are not delayed (the plain path sets it in
    // `serve` for the same reason).
    stream.set_nodelay(true).map_err(|e| (ConnectError::Other, e.into()))?;
    let limit = timeout.map_or(HANDSHAKE_TIMEOUT, |t| t.min(HANDSHAKE_TIMEOUT));
    let handshake = TlsConnector::from(config.clone()).connect(name, Rewind::new(Vec::new(), stream));
    let expired = async {
        glommio::timer::sleep(limit).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
    };
    match futures_lite::future::or(handshake, expired).await {
        Ok(stream) => Ok(Stream::Client(Box::new(stream))),
        Err(e) => Err(tls_error(io::Error::new(e.kind(), format!("TLS handshake: {e}")))),
    }
}

async fn connect(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<TcpStream> {
    // Made only when it is the answer: an `io::Error` with a message is three allocations.
    let mut last = None;
    for &addr in addrs {
        let attempt = match timeout {
            Some(limit) => TcpStream::connect_timeout(addr, limit).await,
            None => TcpStream::connect(addr).await,
        };
        match attempt {
            Ok(stream) => {
                // Go's keepalive, as on clients' connections (`bind::keep_alive`): a backend
                // that vanishes without a FIN does not hold its connections for good.
                if let Err(e) = betwixt_control::bind::keep_alive(std::os::fd::AsRawFd::as_raw_fd(&stream)) {
                    log::debug!("backend {addr}: no keepalive: {e}");
                }
                return Ok(stream);
            }
            Err(e) => last = Some(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "backend has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn future_size<A, B, C, D, E, F: Future>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The size of a connection task as the shard spawns it, abort watch included.
    fn task_size<A, B, C, D, E, W: Future<Output = ()>>(_: impl Fn(A, B, C, D, E) -> W) -> usize {
        future_size(|c: Rc<crate::abort::Connections>, w: W, (): (), (): (), (): ()| {
            crate::abort::until_aborted(c, w)
        })
    }

    /// Every idle connection carries its task's future: the abort watch must not store the
    /// connection a second time (it did as an `async fn`: 3,624 bytes against 1,784), and the
    /// connection future must stay small: steps only some servers take, the steps before the
    /// transfer and the fault path are boxed, and the client's socket is stored once (it was
    /// three times, as the argument of two async fns and the stream of the transfer: 1,808
    /// bytes; 1,264 with the steps before the transfer in the future, 1,008 without). The
    /// shard boxes the task's future: at 1,032 bytes or less, glibc's `malloc` and `free` take
    /// it from and give it back to the thread's cache, a fraction of the work above that size.
    #[test]
    fn connection_task_stays_small() {
        let connection = future_size(handle);
        let task = task_size(handle);
        assert!(task <= connection + 64, "abort watch adds {} bytes", task - connection);
        assert!(task <= 1032, "connection task future is {task} bytes");
    }
}
