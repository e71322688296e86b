//! The live dashboard (`/dashboard`, and `/` for browsers), loaded in a real headless Chromium
//! behind the API's basic auth: it shows the servers and their backends, follows a backend
//! going down within about a healthcheck interval, draws its charts, and shows hostile names
//! as text. Needs the Debian packages chromium and chromium-driver (scripts/test installs them).

mod api_client;
mod common;
#[path = "dashboard/webdriver.rs"]
mod webdriver;

use api_client::Client;
use backends::{Backend, Behaviour};
use common::*;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webdriver::Browser;

const LOGIN: &str = "admin";
const PASSWORD: &str = "s3cret";
const HEALTHCHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often the page reads the API (app.js `PERIOD_MS`).
const PAGE_PERIOD: Duration = Duration::from_secs(1);

/// betwixt with a password-protected API on `api` and the server `web` on `port` over
/// `backends`, each checked by a TCP connect every 500 ms, one failure taking it out.
fn start(api: u16, port: u16, backends: &[&Backend]) -> Betwixt {
    start_with(api, "", port, backends)
}

/// [`start`] with more of `[api]` (`[api.tls]`).
fn start_with(api: u16, api_extra: &str, port: u16, backends: &[&Backend]) -> Betwixt {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.line())).collect();
    let config = format!(
        "[api]\nenabled = true\nbind = \"127.0.0.1:{api}\"\n{api_extra}\n\
         [api.basic_auth]\nlogin = \"{LOGIN}\"\npassword = \"{PASSWORD}\"\n\
         [servers.web]\nbind = \"127.0.0.1:{port}\"\n\
         [servers.web.discovery]\nkind = \"static\"\nstatic_list = [{}]\n\
         [servers.web.healthcheck]\nkind = \"ping\"\ninterval = \"{}ms\"\ntimeout = \"250ms\"\n\
         fails = 1\npasses = 1\n",
        list.join(", "),
        HEALTHCHECK_INTERVAL.as_millis()
    );
    Betwixt::start(&config, &[], &[api, port])
}

/// Keeps a few connections through `port` busy (echoed bytes) until dropped, replacing any
/// that a dying backend closes.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut streams: Vec<Option<TcpStream>> = (0..3).map(|_| None).collect();
                let chunk = vec![7u8; 16 * 1024];
                let mut echo = vec![0u8; 64 * 1024];
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // A rate that steps each second, so that the charts show movement.
                    let len = 4096 * (1 + started.elapsed().as_secs() as usize % 4);
                    for slot in streams.iter_mut() {
                        if slot.is_none() {
                            *slot = TcpStream::connect(addr(port)).ok();
                            if let Some(s) = slot {
                                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                            }
                        }
                        let alive = slot.as_mut().is_some_and(|s| {
                            s.write_all(&chunk[..len]).is_ok() && s.read(&mut echo).is_ok_and(|n| n > 0)
                        });
                        if !alive {
                            *slot = None;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Traffic { stop, thread: Some(thread) }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the page shows, read from its DOM: each server card's heading, its backend rows
/// (address, state attribute, the state badge's text) and its charts (samples drawn, the largest
/// value, and how many coloured pixels lie above the zero line).
const READ_PAGE: &str = r#"
const inked = (canvas) => {
  if (!canvas.width || canvas.height < 4) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height - 3).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60) count++;
  }
  return count;
};
const status = document.getElementById('status');
return {
  title: document.title,
  status: status ? status.dataset.state : null,
  images: document.images.length,
  servers: [...document.querySelectorAll('section[data-server]')].map((s) => ({
    name: s.dataset.server,
    heading: s.querySelector('h2').textContent,
    backends: [...s.querySelectorAll('tr[data-backend]')].map((r) => ({
      address: r.dataset.backend,
      state: r.dataset.state,
      badge: r.querySelector('.state').textContent,
    })),
    charts: [...s.querySelectorAll('canvas')].map((c) => ({
      points: Number(c.dataset.points),
      max: Number(c.dataset.max || 0),
      inked: inked(c),
    })),
  })),
};
"#;

fn server<'a>(page: &'a Value, name: &str) -> Option<&'a Value> {
    page["servers"].as_array()?.iter().find(|s| s["name"].as_str() == Some(name))
}

/// A backend's state as the page shows it, checked to agree with its badge's text.
fn backend_state(page: &Value, name: &str, address: &str) -> Option<String> {
    let row = server(page, name)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"].as_str() == Some(address))?;
    let state = row["state"].as_str()?;
    assert_eq!(row["badge"].as_str(), Some(state), "badge and state disagree: {row}");
    Some(state.to_string())
}

/// Both charts of `name` have drawn samples with data above zero.
fn charts_drawn(page: &Value, name: &str) -> bool {
    let Some(charts) = server(page, name).and_then(|s| s["charts"].as_array()) else { return false };
    charts.len() == 2
        && charts.iter().all(|c| {
            c["points"].as_u64().unwrap_or(0) >= 3
                && c["max"].as_f64().unwrap_or(0.0) > 0.0
                && c["inked"].as_u64().unwrap_or(0) > 20
        })
}

/// Polls the page until `cond` holds, returning the last reading either way.
fn poll(browser: &Browser, limit: Duration, mut cond: impl FnMut(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let page = browser.run(READ_PAGE);
        if cond(&page) {
            return (true, page);
        }
        if Instant::now() >= deadline {
            return (false, page);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dashboard_follows_backends_and_traffic_in_a_browser() {
    let (api, port) = (free_port(), free_port());
    let backend_a = Backend::start("a", Behaviour::Echo);
    let mut backend_b = Backend::start("b", Behaviour::Echo);
    let betwixt = start(api, port, &[&backend_a, &backend_b]);
    let _traffic = Traffic::start(port);
    let browser = Browser::start(1100, 720);

    // The browser answers the API's challenge with the address's credentials, then sends them
    // with the page's own requests (script, style sheet, fetch) by itself.
    browser.open(&format!("http://{LOGIN}:{PASSWORD}@127.0.0.1:{api}/dashboard"));
    let (a, b) = (backend_a.line(), backend_b.line());
    let (shown, page) = poll(&browser, Duration::from_secs(15), |page| {
        backend_state(page, "web", &a).as_deref() == Some("live")
            && backend_state(page, "web", &b).as_deref() == Some("live")
    });
    assert!(shown, "both backends live on the page; page: {page}\nlog:\n{}", betwixt.log_text());
    assert_eq!(page["status"].as_str(), Some("ok"), "{page}");
    assert_eq!(server(&page, "web").unwrap()["heading"].as_str(), Some("web"));

    let (drawn, page) = poll(&browser, Duration::from_secs(15), |page| charts_drawn(page, "web"));
    assert!(drawn, "connections and traffic charts drawn with data: {page}");

    // The page must follow a backend going down while it is open: within one healthcheck
    // interval and one page period, plus a margin for a loaded machine.
    backend_b.stop();
    let stopped = Instant::now();
    let limit = HEALTHCHECK_INTERVAL + PAGE_PERIOD + Duration::from_millis(2500);
    let (down, page) =
        poll(&browser, limit, |page| backend_state(page, "web", &b).as_deref() == Some("down"));
    let took = stopped.elapsed();
    assert!(down, "backend {b} shown down within {limit:?}; page: {page}");
    assert_eq!(backend_state(&page, "web", &a).as_deref(), Some("live"), "{page}");
    eprintln!("the page showed {b} down {took:?} after it stopped");

    // Samples after the change, so that the picture shows the traffic moving to the live
    // backend; a longer history for the documentation's picture.
    std::thread::sleep(Duration::from_secs(if update_screenshot() { 40 } else { 3 }));
    save_screenshot(&browser, &betwixt.dir);

    // A name that is markup stays text: no element appears, no handler runs.
    let hostile = "<img src=x onerror=\"document.title='owned'\">";
    let client = Client::http(api).login(LOGIN, PASSWORD);
    let body = api_client::static_server(&format!("127.0.0.1:{}", free_port()), &a);
    let created = client.send("POST", &format!("/servers/{}", percent_encoded(hostile)), &body);
    assert_eq!(created.status, 200, "{}", created.body);
    let (shown, page) = poll(&browser, Duration::from_secs(10), |page| server(page, hostile).is_some());
    assert!(shown, "the new server appears without a reload: {page}");
    assert_eq!(server(&page, hostile).unwrap()["heading"].as_str(), Some(hostile));
    assert_eq!(page["images"].as_u64(), Some(0), "{page}");
    assert_eq!(page["title"].as_str(), Some("betwixt dashboard"), "{page}");

    // `/` serves the same page to a browser, which asks for HTML first.
    browser.open(&format!("http://{LOGIN}:{PASSWORD}@127.0.0.1:{api}/"));
    let (shown, page) = poll(&browser, Duration::from_secs(10), |page| server(page, "web").is_some());
    assert!(shown, "the dashboard at /: {page}");
}

#[test]
fn dashboard_over_https() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let dir = TempDir::new("dashboard-tls");
    let cert = dir.write("cert.pem", &certified.cert.pem());
    let key = dir.write("key.pem", &certified.key_pair.serialize_pem());
    let tls = format!("[api.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"", cert.display(), key.display());
    let (api, port) = (free_port(), free_port());
    let backend = Backend::start("a", Behaviour::Echo);
    let _betwixt = start_with(api, &tls, port, &[&backend]);
    // The session accepts the self-signed certificate; the page and its requests are HTTPS.
    let browser = Browser::start(900, 600);
    browser.open(&format!("https://{LOGIN}:{PASSWORD}@127.0.0.1:{api}/dashboard"));
    let line = backend.line();
    let (shown, page) = poll(&browser, Duration::from_secs(15), |page| {
        page["status"].as_str() == Some("ok") && backend_state(page, "web", &line).as_deref() == Some("live")
    });
    assert!(shown, "the dashboard over HTTPS: {page}");
}

/// The screenshot goes to the test's temporary directory; with `BETWIXT_UPDATE_SCREENSHOT=1`
/// it replaces docs/dashboard.png.
fn save_screenshot(browser: &Browser, dir: &TempDir) {
    let png = browser.screenshot("body");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let path = if update_screenshot() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")
    } else {
        dir.0.join("dashboard.png")
    };
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
}

fn update_screenshot() -> bool {
    std::env::var("BETWIXT_UPDATE_SCREENSHOT").as_deref() == Ok("1")
}

/// Browsers' Accept header when they navigate to a page (Chromium's).
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8";

#[test]
fn dashboard_headers_and_root_negotiation() {
    let (api, port) = (free_port(), free_port());
    let backend = Backend::start("a", Behaviour::Echo);
    let _betwixt = start(api, port, &[&backend]);
    let anonymous = Client::http(api);
    let client = Client::http(api).login(LOGIN, PASSWORD);

    for (path, content_type) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        assert_eq!(anonymous.get(path).status, 401, "{path} needs the password");
        let reply = client.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.starts_with("default-src 'none';") && csp.contains("connect-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{path}: {csp}");
    }
    let page = client.get("/dashboard").body;
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(!page.contains("<script>") && !page.contains("http"), "no inline script, no external URL");

    // API clients keep gobetween's JSON at `/`: no Accept, curl's */*, JSON asked for or
    // ranked as high as HTML.
    let keys = ["configuration", "pid", "startTime", "time", "uptime", "version"];
    let none: &[(&str, &str)] = &[];
    for headers in [
        none,
        &[("Accept", "*/*")],
        &[("Accept", "application/json")],
        &[("Accept", "application/json, text/html")],
    ] {
        let reply = client.try_send("GET", "/", headers, "").unwrap();
        assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"), "{headers:?}");
        assert_eq!(api_client::object_keys(&reply.json()), keys, "{headers:?}");
        assert_eq!(reply.header("vary"), Some("Accept"), "{headers:?}");
    }
    let reply = client.try_send("GET", "/", &[("Accept", BROWSER_ACCEPT)], "").unwrap();
    assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(reply.body, page);
    assert_eq!(reply.header("vary"), Some("Accept"));
    assert_eq!(anonymous.try_send("GET", "/", &[("Accept", BROWSER_ACCEPT)], "").unwrap().status, 401);
}
