//! `[access_log]` (a betwixt addition): one line per connection, and per UDP session, written by
//! a thread of its own so that no shard ever waits for it.
//!
//! A shard fills a fixed-size [`Record`] as the connection goes and, at its end, offers it to a
//! bounded queue without waiting (`try_send`). The writer thread formats and writes what it
//! takes, through a buffer flushed at least once a second. When the queue is full (a slow disk,
//! a pipe nobody reads) the record is dropped and counted: `betwixt_access_log_dropped_records`
//! in the metrics and a warning in the log, at most one a second. SIGHUP reopens the file (logrotate).

mod format;
mod record;
mod writer;

pub use format::Format;
pub use record::{End, Record, Side};

use crate::config::{AccessLog as Section, ConfigError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::OnceLock;

/// Records the queue holds unless `queue_size` says otherwise: at 100k connections a second, a
/// sixth of a second of them, ample room for the writer's pause between batches
/// (`writer::BATCH_PAUSE`). Taken at start (about 200 bytes each), never grown.
pub const DEFAULT_QUEUE: usize = 16 * 1024;

/// The largest `queue_size` (about 200 MB of records).
pub const MAX_QUEUE: usize = 1 << 20;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
    File(String),
}

impl Output {
    fn parse(text: &str) -> Output {
        match text {
            "" | "stdout" => Output::Stdout,
            "stderr" => Output::Stderr,
            path => Output::File(path.to_string()),
        }
    }
}

/// `[access_log]` as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub output: Output,
    pub format: Format,
    pub queue_size: usize,
}

impl Settings {
    /// `None` when the section is absent or not enabled.
    pub fn from_section(section: &Section) -> Result<Option<Settings>, ConfigError> {
        let format = match section.format.as_deref().unwrap_or("text") {
            "text" => Format::Text,
            "json" => Format::Json,
            other => {
                return Err(ConfigError::at_key(
                    "access_log.format",
                    format!("{other:?} is not a format: \"text\" or \"json\""),
                ))
            }
        };
        let queue_size = section.queue_size.unwrap_or(DEFAULT_QUEUE);
        if !(1..=MAX_QUEUE).contains(&queue_size) {
            return Err(ConfigError::at_key(
                "access_log.queue_size",
                format!("must be from 1 to {MAX_QUEUE}"),
            ));
        }
        let output = Output::parse(section.output.as_deref().unwrap_or(""));
        Ok(section.enabled.then_some(Settings { output, format, queue_size }))
    }

    /// Whether the output can be written, without creating or opening it (opening a FIFO would
    /// wait for its reader): what `betwixt check` tells before a start would fail.
    pub fn check_output(&self) -> Result<(), String> {
        let Output::File(path) = &self.output else { return Ok(()) };
        let failed = |why: String| format!("access_log.output: cannot write {path}: {why}");
        let path = Path::new(path);
        let (target, kind) = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Err(failed("it is a directory".into())),
            Ok(_) => (path, libc::W_OK),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                match std::fs::metadata(parent) {
                    Ok(meta) if meta.is_dir() => (parent, libc::W_OK | libc::X_OK),
                    Ok(_) => return Err(failed(format!("{} is not a directory", parent.display()))),
                    Err(e) => return Err(failed(format!("{}: {e}", parent.display()))),
                }
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let c_path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| failed("the path holds a NUL byte".into()))?;
        // SAFETY: `c_path` is a valid NUL-terminated string.
        if unsafe { libc::access(c_path.as_ptr(), kind) } != 0 {
            return Err(failed(std::io::Error::last_os_error().to_string()));
        }
        Ok(())
    }
}

/// The running access log: the shards' side of the queue and what they count.
pub struct AccessLog {
    queue: SyncSender<Record>,
    dropped: AtomicU64,
    reopen: AtomicBool,
    /// Set by `finish`; the writer answers with `finished` once it has written what was queued.
    finish: AtomicBool,
    finished: AtomicBool,
}

static RUNNING: OnceLock<AccessLog> = OnceLock::new();

/// The access log, once `start` has run with it enabled.
pub fn running() -> Option<&'static AccessLog> {
    RUNNING.get()
}

/// Opens the output (an error names it) and starts the writer thread; nothing when the
/// section is absent or not enabled. Once per process, before the shards run.
/// What `start` would refuse, found without opening or creating anything (`betwixt check`).
pub fn check(section: Option<&Section>) -> Result<(), String> {
    let settings = section.map(Settings::from_section).transpose().map_err(|e| e.to_string())?.flatten();
    settings.map_or(Ok(()), |s| s.check_output())
}

pub fn start(section: Option<&Section>) -> Result<(), String> {
    let Some(settings) =
        section.map(Settings::from_section).transpose().map_err(|e| e.to_string())?.flatten()
    else {
        return Ok(());
    };
    let sink = writer::Sink::open(&settings.output)?;
    let (queue, records) = std::sync::mpsc::sync_channel(settings.queue_size);
    let log = AccessLog {
        queue,
        dropped: AtomicU64::new(0),
        reopen: AtomicBool::new(false),
        finish: AtomicBool::new(false),
        finished: AtomicBool::new(false),
    };
    if RUNNING.set(log).is_err() {
        return Err("the access log is already running".into());
    }
    let log = RUNNING.get().expect("set above");
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer::run(log, records, sink, settings.format))
        .map_err(|e| format!("cannot start the access log's writer: {e}"))?;
    Ok(())
}

/// Before the process exits: lets the writer write and flush what is queued, waiting at most
/// `FINISH_WAIT` (a writer stuck on its output is left behind).
pub fn finish() {
    let Some(log) = running() else { return };
    log.finish.store(true, Relaxed);
    let deadline = std::time::Instant::now() + FINISH_WAIT;
    while !log.finished.load(Relaxed) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// How long `finish` waits for the writer: it looks at the request at least once a second.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Warns once a second while lines are being dropped. Runs on the control thread: the writer
/// may be the one stuck (a write blocked on a full pipe), and a shard must not write logs for
/// every line it drops.
pub async fn warn_of_drops() {
    let Some(log) = running() else { return };
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let dropped = log.dropped();
        if dropped != seen {
            log::warn!(
                "access log: {} line(s) dropped in the last second, {dropped} in all: the output does not keep up",
                dropped - seen
            );
            seen = dropped;
        }
    }
}

impl AccessLog {
    /// Offers `record` to the writer without waiting: dropped and counted when the queue is
    /// full. A shard calls this once per connection.
    pub fn push(&self, record: Record) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(record) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Asks the writer to close and reopen its file (within a second); for logrotate's SIGHUP.
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(output: &str, format: Option<&str>) -> Section {
        Section {
            enabled: true,
            output: Some(output.into()),
            format: format.map(Into::into),
            queue_size: None,
        }
    }

    #[test]
    fn reads_the_section() {
        let settings = Settings::from_section(&section("stderr", Some("json"))).unwrap().unwrap();
        assert_eq!(
            settings,
            Settings { output: Output::Stderr, format: Format::Json, queue_size: DEFAULT_QUEUE }
        );
        let settings = Settings::from_section(&section("/tmp/a.log", None)).unwrap().unwrap();
        assert_eq!(settings.output, Output::File("/tmp/a.log".into()));
        assert_eq!(settings.format, Format::Text);
        assert_eq!(Settings::from_section(&Section::default()).unwrap(), None);
        let error = Settings::from_section(&section("", Some("xml"))).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("access_log.format"));
        let error =
            Settings::from_section(&Section { queue_size: Some(0), ..section("", None) }).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("access_log.queue_size"));
    }

    #[test]
    fn an_unwritable_output_is_found_without_opening_it() {
        let dir = std::env::temp_dir().join(format!("betwixt-access-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let check = |path: &Path| {
            let output = Output::File(path.display().to_string());
            Settings { output, format: Format::Text, queue_size: 1 }.check_output()
        };
        assert_eq!(check(&dir.join("new.log")), Ok(()));
        assert!(!dir.join("new.log").exists(), "checking must not create the file");
        let missing = check(&dir.join("no-such-dir/a.log")).unwrap_err();
        assert!(missing.contains("no-such-dir") && missing.contains("No such file"), "{missing}");
        assert!(check(&dir).unwrap_err().contains("is a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
