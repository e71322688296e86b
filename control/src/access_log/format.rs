//! Access log lines, text or JSON, written by the writer thread into a reused buffer.
//!
//! Both formats escape whatever a peer or a configuration can put in a value (an SNI name, an
//! error text, a server name): a line stays one line, no value can pose as another field, and
//! nothing can reach a terminal as a control sequence or reorder the display (`text::is_unsafe`).

use super::record::Record;
use crate::logging::rfc3339;
use crate::text::{is_unsafe, push_json_string};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `key=value` pairs; values that need it quoted and escaped as JSON strings are.
    Text,
    /// One JSON object per line.
    Json,
}

/// Appends `record` as one line (ending in `\n`) to `out`.
pub fn write(format: Format, record: &Record, out: &mut String) {
    let mut line = Line { format, out, first: true };
    let protocol = format!("{:?}", record.server.protocol).to_lowercase();
    line.open();
    line.text("time", Some(&rfc3339(record.start)));
    line.text("protocol", Some(&protocol));
    line.text("server", Some(&record.server.name));
    line.text("client", Some(&record.client.to_string()));
    line.text("sni", record.sni.as_deref());
    line.text("backend", record.backend.as_ref().map(|b| b.spec.address()).as_deref());
    line.number("bytes_from_client", record.bytes[0]);
    line.number("bytes_to_client", record.bytes[1]);
    if let Some([from, to]) = record.datagrams {
        line.number("datagrams_from_client", from);
        line.number("datagrams_to_client", to);
    }
    line.raw("duration_ms", &format!("{:.3}", record.duration.as_secs_f64() * 1000.0));
    line.text("stage", Some(record.stage));
    line.text("end", Some(record.end.as_str()));
    line.text("side", record.side.map(|s| s.as_str()));
    line.text("error", record.error.as_deref());
    line.close();
}

struct Line<'a> {
    format: Format,
    out: &'a mut String,
    first: bool,
}

impl Line<'_> {
    fn open(&mut self) {
        if self.format == Format::Json {
            self.out.push('{');
        }
    }

    fn close(&mut self) {
        if self.format == Format::Json {
            self.out.push('}');
        }
        self.out.push('\n');
    }

    fn key(&mut self, key: &str) {
        let separator = if self.first {
            ""
        } else if self.format == Format::Json {
            ","
        } else {
            " "
        };
        self.first = false;
        self.out.push_str(separator);
        match self.format {
            Format::Json => {
                let _ = write!(self.out, "\"{key}\":");
            }
            Format::Text => {
                let _ = write!(self.out, "{key}=");
            }
        }
    }

    /// A value that is a number as written (no quotes in either format).
    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push_str(value);
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    /// A text value; `None` is JSON `null`, and `-` in text.
    fn text(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match (self.format, value) {
            (Format::Json, None) => self.out.push_str("null"),
            (Format::Text, None) => self.out.push('-'),
            (Format::Json, Some(value)) => push_json_string(value, self.out),
            (Format::Text, Some(value)) if needs_quotes(value) => push_json_string(value, self.out),
            (Format::Text, Some(value)) => self.out.push_str(value),
        }
    }
}

/// Whether a text-format value must be quoted to stay one value: empty, `-` (which stands for
/// no value), or holding a space, quote, `=`, backslash or unsafe character.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value == "-"
        || value.contains(|c: char| c == ' ' || c == '"' || c == '=' || c == '\\' || is_unsafe(c))
}

#[cfg(test)]
mod tests {
    use super::super::record::{End, Side};
    use super::*;
    use crate::config::Server;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    fn record(sni: &str, error: &str) -> Record {
        let server = Server { bind: "127.0.0.1:1".into(), ..Server::default() };
        Record {
            start: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            duration: Duration::from_micros(1500),
            server: Arc::new(server.resolve("web", None).0),
            client: "192.0.2.1:4000".parse().unwrap(),
            sni: Some(sni.into()),
            backend: None,
            bytes: [12, 345],
            datagrams: None,
            stage: "transfer",
            end: End::Reset,
            side: Some(Side::Backend),
            error: Some(error.into()),
        }
    }

    fn line(format: Format, record: &Record) -> String {
        let mut out = String::new();
        write(format, record, &mut out);
        out
    }

    #[test]
    fn text_lines_have_every_field() {
        let text = line(Format::Text, &record("example.com", "connection reset"));
        assert_eq!(
            text,
            "time=2026-11-18T11:06:40.123Z protocol=tcp server=web client=192.0.2.1:4000 \
             sni=example.com backend=- bytes_from_client=12 bytes_to_client=345 duration_ms=1.500 \
             stage=transfer end=reset side=backend error=\"connection reset\"\n"
        );
    }

    #[test]
    fn hostile_values_cannot_forge_fields_or_lines() {
        let hostile = "a.com end=done\n[INFO] x\u{1b}[31m\u{202e}\"\\";
        let text = line(Format::Text, &record(hostile, "-"));
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(!text.contains(is_unsafe_but_newline), "{text}");
        assert!(text.contains(r#"sni="a.com end=done\n[INFO] x\u001b[31m\u202e\"\\""#), "{text}");
        assert!(text.contains("error=\"-\""), "{text}");
        let json = line(Format::Json, &record(hostile, "e"));
        assert_eq!(json.matches('\n').count(), 1);
        assert!(!json.contains(is_unsafe_but_newline), "{json}");
        let parsed: sonic_rs::Value = sonic_rs::from_str(json.trim_end()).unwrap();
        assert_eq!(sonic_rs::JsonValueTrait::as_str(&parsed["sni"]), Some(hostile));
        assert!(sonic_rs::JsonValueTrait::is_null(&parsed["backend"]));
        assert_eq!(sonic_rs::JsonValueTrait::as_u64(&parsed["bytes_to_client"]), Some(345));
    }

    fn is_unsafe_but_newline(c: char) -> bool {
        c != '\n' && is_unsafe(c)
    }
}
