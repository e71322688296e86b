//! What the replays of service registries' HTTP APIs share (tests/discovery_consul.rs,
//! tests/discovery_kubernetes.rs): one thread per connection reading one GET, a record of the
//! requests, and state whose changes wake requests held open (blocking queries, watches).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One GET as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub query: HashMap<String, String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
}

impl Request {
    /// Reads a request head; `None` when the peer sends none.
    pub fn read(stream: &mut impl Read) -> Option<Request> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let target = line.split(' ').nth(1)?.to_string();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let query = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), super::percent_decoded(v)))
            .collect();
        Some(Request { path: path.to_string(), query, headers })
    }
}

/// State shared by the replay's threads and the test; `change` wakes every waiting request.
pub struct Shared<T> {
    state: Mutex<T>,
    changed: Condvar,
    pub requests: Mutex<Vec<Request>>,
}

impl<T> Shared<T> {
    pub fn new(state: T) -> Arc<Shared<T>> {
        Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            requests: Mutex::new(Vec::new()),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap()
    }

    /// Changes the state and wakes the requests held open.
    pub fn change(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Holds until `ready` holds of the state or `limit` passes; returns the guard either way.
    pub fn wait_for(&self, limit: Duration, mut ready: impl FnMut(&T) -> bool) -> MutexGuard<'_, T> {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !ready(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        state
    }

    pub fn requests_to(&self, path_part: &str) -> Vec<Request> {
        self.requests.lock().unwrap().iter().filter(|r| r.path.contains(path_part)).cloned().collect()
    }
}

/// Serves each connection on its own thread: reads the request, records it and hands it to
/// `answer`. Returns the port.
pub fn serve<T: Send + 'static, S: Read + Write + Send + 'static>(
    shared: Arc<Shared<T>>,
    wrap: impl Fn(TcpStream) -> Option<S> + Send + Sync + 'static,
    answer: impl Fn(&Shared<T>, &Request, &mut S) + Send + Sync + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (wrap, answer) = (Arc::new(wrap), Arc::new(answer));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (shared, wrap, answer) = (shared.clone(), wrap.clone(), answer.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(mut stream) = wrap(stream) else { return };
                let Some(request) = Request::read(&mut stream) else { return };
                shared.requests.lock().unwrap().push(request.clone());
                answer(&shared, &request, &mut stream);
            });
        }
    });
    port
}

/// A whole answer with a JSON body and `extra` header lines, closing the connection.
pub fn respond(stream: &mut impl Write, status: &str, extra: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
