//! The writer thread: takes records off the queue, formats them into one reused buffer and
//! writes them through a `BufWriter`, which is flushed at least once a second. Writes may block
//! (a full disk, a FIFO nobody reads): only this thread waits, and the shards' records are
//! dropped and counted meanwhile (`AccessLog::push`).

use super::format::{self, Format};
use super::record::Record;
use super::{AccessLog, Output};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Lines reach the output at most this long after they were written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// After a batch, the writer sleeps this long before taking the next: records gather in the
/// queue meanwhile, and a shard pushing while the writer is not waiting on the queue never
/// has to wake it (a system call per connection otherwise).
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// Output buffer; a line longer than this is written at once.
const BUFFER: usize = 64 * 1024;

pub enum Sink {
    Stdout(BufWriter<io::Stdout>),
    Stderr(BufWriter<io::Stderr>),
    File { path: String, file: BufWriter<File> },
}

impl Sink {
    pub fn open(output: &Output) -> Result<Sink, String> {
        Ok(match output {
            Output::Stdout => Sink::Stdout(BufWriter::with_capacity(BUFFER, io::stdout())),
            Output::Stderr => Sink::Stderr(BufWriter::with_capacity(BUFFER, io::stderr())),
            Output::File(path) => Sink::File { path: path.clone(), file: open_file(path)? },
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::Stderr(out) => out,
            Sink::File { file, .. } => file,
        }
    }

    /// Flushes, then opens the file's path anew (a rotated file was moved away meanwhile).
    fn reopen(&mut self) {
        let Sink::File { path, file } = self else { return };
        if let Err(e) = file.flush() {
            log::warn!("access log {path}: {e}");
        }
        match open_file(path) {
            Ok(reopened) => {
                *file = reopened;
                log::info!("access log {path} reopened");
            }
            // The old file stays in use: lines are not lost for a failed reopen.
            Err(e) => log::error!("{e}; writing on to the file open before"),
        }
    }
}

fn open_file(path: &str) -> Result<BufWriter<File>, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access_log.output: cannot open {path}: {e}"))?;
    Ok(BufWriter::with_capacity(BUFFER, file))
}

/// Runs until `finish` asks it to end (the queue's sender is never dropped).
pub fn run(log: &AccessLog, records: Receiver<Record>, mut sink: Sink, format: Format) {
    let mut line = String::with_capacity(512);
    let mut flushed = Instant::now();
    let mut unflushed = false;
    loop {
        let wait = if unflushed { FLUSH_EVERY.saturating_sub(flushed.elapsed()) } else { FLUSH_EVERY };
        match records.recv_timeout(wait) {
            Ok(first) => {
                // Records are dropped here, off the shards (a removed server's settings or
                // backend may go with the last of them).
                write(&mut sink, format, &first, &mut line);
                write_queued(&records, &mut sink, format, &mut line);
                unflushed = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = sink.writer().flush();
                return;
            }
        }
        if unflushed && flushed.elapsed() >= FLUSH_EVERY {
            if let Err(e) = sink.writer().flush() {
                crate::log_limited!(per_second: 1, log::Level::Error, "access log: {e}");
            }
            (flushed, unflushed) = (Instant::now(), false);
        }
        if log.reopen.swap(false, Relaxed) {
            sink.reopen();
        }
        if log.finish.load(Relaxed) {
            write_queued(&records, &mut sink, format, &mut line);
            let _ = sink.writer().flush();
            log.finished.store(true, Relaxed);
            return;
        }
        if unflushed {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}

/// Writes every record waiting in the queue now.
fn write_queued(records: &Receiver<Record>, sink: &mut Sink, format: Format, line: &mut String) {
    while let Ok(record) = records.try_recv() {
        write(sink, format, &record, line);
    }
}

fn write(sink: &mut Sink, format: Format, record: &Record, line: &mut String) {
    line.clear();
    format::write(format, record, line);
    if let Err(e) = sink.writer().write_all(line.as_bytes()) {
        crate::log_limited!(per_second: 1, log::Level::Error, "access log: {e}");
    }
}
