//! Headless Chromium driven through chromedriver's plain HTTP WebDriver protocol (W3C), enough
//! for the dashboard test: open a page, run a script in it, take a screenshot.
//!
//! chromedriver runs in a process group of its own, and Chromium with its helpers inherits that
//! group: dropping the `Browser` (test passed or panicked) ends the session, then kills the whole
//! group and waits until nothing of it is left.

use crate::api_client::Client;
use crate::common::{free_port, wait_until, TempDir};
use base64::Engine;
use sonic_rs::{json, JsonValueTrait, Value};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    driver: Child,
    client: Client,
    session: Option<String>,
    _profile: TempDir,
}

/// Chromium's own binary on Debian (`/usr/bin/chromium` is a wrapper script).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

impl Browser {
    /// chromedriver on a free loopback port (it listens on loopback only unless told otherwise)
    /// with one headless Chromium session whose window is `width` × `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver: {e} (Debian packages chromium and chromium-driver)"));
        let profile = TempDir::new("chromium");
        let mut browser = Browser { driver, client: Client::http(port), session: None, _profile: profile };
        let ready = wait_until(Duration::from_secs(10), || {
            browser.client.try_send("GET", "/status", &[], "").is_ok_and(|r| r.status == 200)
        });
        assert!(ready, "chromedriver did not answer on port {port}");
        let args = [
            "--headless=new".to_string(),
            // Root cannot use Chromium's sandbox; the browser loads only the test's own pages.
            "--no-sandbox".into(),
            format!("--user-data-dir={}", browser._profile.0.display()),
            format!("--window-size={width},{height}"),
            "--no-proxy-server".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--force-device-scale-factor=1".into(),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser.command("POST", "/session", &capabilities);
        let session = created["sessionId"].as_str().expect("a session id").to_string();
        browser.session = Some(session);
        browser
    }

    /// Sends one WebDriver command and returns its `value`; a WebDriver error fails the test.
    fn command(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let headers = [("Content-Type", "application/json")];
        let reply = self
            .client
            .try_send(method, path, &headers, &body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        assert_eq!(reply.status, 200, "WebDriver {method} {path}: {}", reply.body);
        reply.json()["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().expect("a session"))
    }

    /// Opens `url` and returns once the page has loaded.
    pub fn open(&self, url: &str) {
        self.command("POST", &self.session_path("/url"), &json!({"url": url}));
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn run(&self, script: &str) -> Value {
        self.command("POST", &self.session_path("/execute/sync"), &json!({"script": script, "args": []}))
    }

    /// The first element matching the CSS `selector`, as a PNG.
    pub fn screenshot(&self, selector: &str) -> Vec<u8> {
        let query = json!({"using": "css selector", "value": selector});
        let element = self.command("POST", &self.session_path("/element"), &query);
        // W3C's fixed key for an element reference.
        let id = element["element-6066-11e4-a52e-4f735466cecf"].as_str().expect("an element");
        let path = self.session_path(&format!("/element/{id}/screenshot"));
        let encoded = self.command("GET", &path, &Value::new());
        let encoded = encoded.as_str().expect("a base64 PNG");
        base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A clean end first (Chromium closes and removes its temporary files), then no mercy
        // for anything of the group still running.
        if let Some(session) = self.session.take() {
            let _ = self.client.try_send("DELETE", &format!("/session/{session}"), &[], "");
        }
        let group = -(self.driver.id() as i32);
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.driver.wait();
        // Chromium's processes were chromedriver's children: wait until the signal took them all.
        let gone = wait_until(Duration::from_secs(10), || unsafe { libc::kill(group, 0) } != 0);
        if !gone {
            eprintln!("processes of group {} still exist after SIGKILL", -group);
        }
    }
}
