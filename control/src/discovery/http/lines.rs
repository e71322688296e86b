//! A streamed answer read line by line: watch endpoints send one JSON object per line (Docker's
//! `/events`, Kubernetes' `?watch=1`) and keep the connection open between them.

use super::Connection;
use crate::config::depth::check_json_depth;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// The lines of a streamed answer. Holds the connection: dropping the stream closes it.
#[derive(Debug)]
pub struct LineStream {
    body: Incoming,
    _connection: Connection,
    /// Bytes received after the last complete line.
    pending: Vec<u8>,
    max_line: usize,
    url: String,
    ended: bool,
}

impl LineStream {
    pub(super) fn new(body: Incoming, connection: Connection, max_line: usize, url: String) -> LineStream {
        LineStream { body, _connection: connection, pending: Vec::new(), max_line, url, ended: false }
    }

    /// The next non-empty line (without its `\n` or `\r\n`), `None` once the answer ended. A
    /// line longer than `max_line` or a broken connection is an error; after an error or the
    /// end the stream only answers `None`.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max_line {
                    return Err(self.end(format!("a line of {} bytes", line.len())));
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.pending.len() > self.max_line {
                return Err(self.end(format!("a line longer than {} bytes", self.max_line)));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                None => {
                    self.ended = true;
                    // A last line without its newline still counts.
                    if !self.pending.iter().all(u8::is_ascii_whitespace) {
                        return Ok(Some(std::mem::take(&mut self.pending)));
                    }
                    self.pending.clear();
                }
                Some(Err(e)) => return Err(self.end(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next line read as JSON (nesting bounded as in configuration files), `None` once
    /// the answer ended.
    pub async fn next_json(&mut self) -> Result<Option<sonic_rs::Value>, String> {
        let Some(line) = self.next_line().await? else { return Ok(None) };
        let text = std::str::from_utf8(&line).map_err(|_| self.end("a line that is not UTF-8".into()))?;
        check_json_depth(text).map_err(|e| self.end(format!("a line that is no JSON: {}", e.message)))?;
        let value = sonic_rs::from_str(text).map_err(|e| self.end(format!("a line that is no JSON: {e}")))?;
        Ok(Some(value))
    }

    fn end(&mut self, what: String) -> String {
        self.ended = true;
        self.pending = Vec::new();
        format!("reading the stream of {}: {what}", self.url)
    }
}
