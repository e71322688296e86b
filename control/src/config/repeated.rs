//! Keys repeated in one JSON object, read as Go's `encoding/json` reads them (gobetween decodes
//! its JSON files and `POST /servers/NAME` bodies with it): each occurrence is decoded in turn
//! into the same place.
//!
//! - A key of a section: the last value wins, except that an object decoded over an earlier
//!   object sets only the keys it holds (the two are merged key by key, recursively), and that a
//!   later `null` clears only what Go can clear (a pointer, list or map: an optional section or
//!   value) and leaves a plain string, number, boolean or embedded section as it was.
//! - `servers` is a map: a second `servers` object adds its servers to the first, and a server
//!   named again replaces the earlier one whole (Go decodes each map value afresh).
//!
//! serde refuses a repeated field, so a text with repeats is rewritten without them before it
//! is deserialized, and each repeat becomes a warning at its line. The rewrite remembers where
//! each piece came from, so that errors found in it point into the text as written. A text
//! without repeats (nearly every one) is read as it is.

use super::depth::MAX_DEPTH;
use super::error::{ConfigWarning, MAX_WARNINGS};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// A JSON text rewritten without repeated keys.
#[derive(Debug)]
pub struct Merged {
    pub text: String,
    /// Each piece copied from the source: (offset in `text`, offset in the source, length).
    runs: Vec<(usize, usize, usize)>,
    /// One warning per repeat, placed in the source.
    pub warnings: Vec<ConfigWarning>,
}

impl Merged {
    /// The offset in the source that offset `at` of `text` was copied from. Punctuation the
    /// rewrite added belongs to the end of the piece before it.
    pub fn source_offset(&self, at: usize) -> usize {
        match self.runs.partition_point(|run| run.0 <= at).checked_sub(1) {
            Some(i) => {
                let (out, source, len) = self.runs[i];
                source + (at - out).min(len)
            }
            None => self.runs.first().map_or(0, |run| run.1),
        }
    }
}

/// `text` rewritten without repeated keys; `None` when no object repeats a key, or when the
/// text is not one well-formed JSON value (the parser then says why).
pub fn merge_repeated_keys(text: &str) -> Option<Merged> {
    let mut scan = Scan { text: text.as_bytes(), at: 0 };
    let root = scan.value(Shape::Root, 0)?;
    scan.blank();
    if scan.at != text.len() || !root.repeats() {
        return None;
    }
    let mut rewrite = Rewrite {
        source: text,
        text: String::with_capacity(text.len()),
        runs: Vec::new(),
        warnings: Vec::new(),
        more: 0,
        lines: None,
    };
    rewrite.node(root, Shape::Root, "");
    let Rewrite { text, runs, mut warnings, more, .. } = rewrite;
    if more > 0 {
        let message = format!("{more} more repeated keys not shown");
        warnings.push(ConfigWarning { file: None, position: None, key: None, message });
    }
    Some(Merged { text, runs, warnings })
}

/// Where the first JSON value of `bytes` ends (what Go's `json.Decoder` reads, leaving the rest
/// unread); `None` when it is not well-formed or nests deeper than `MAX_DEPTH`.
pub fn first_value_end(bytes: &[u8]) -> Option<usize> {
    let mut scan = Scan { text: bytes, at: 0 };
    scan.value(Shape::Root, 0)?;
    Some(scan.at)
}

/// What Go decodes an object into, which decides how its keys match and how repeats combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The whole configuration, or a `POST /servers/NAME` body (one server).
    Root,
    /// `servers`: server name to server.
    Servers,
    Server,
    /// Any other object, by its key (empty when none of `SECTIONS`).
    Section(&'static str),
}

/// Sections with keys that a later `null` clears.
const SECTIONS: [&str; 7] = ["defaults", "api", "tls", "backends_tls", "access", "discovery", "healthcheck"];

/// A server's keys that Go holds as pointers (the four connection options first, as in
/// `[defaults]`).
const SERVER_NULLABLE: [&str; 12] = [
    "max_connections",
    "client_idle_timeout",
    "backend_idle_timeout",
    "backend_connection_timeout",
    "sni",
    "tls",
    "backends_tls",
    "udp",
    "access",
    "proxy_protocol",
    "discovery",
    "healthcheck",
];

impl Shape {
    fn child(self, key: &str) -> Shape {
        match self {
            Shape::Root if key == "servers" => Shape::Servers,
            Shape::Servers => Shape::Server,
            _ => Shape::Section(SECTIONS.iter().find(|s| **s == key).copied().unwrap_or("")),
        }
    }

    /// The key as Go matches it: a struct's keys in any case, a map's exactly.
    fn normalize(self, key: Cow<'_, str>) -> Cow<'_, str> {
        if self == Shape::Servers || !key.bytes().any(|b| b.is_ascii_uppercase()) {
            key
        } else {
            Cow::Owned(key.to_ascii_lowercase())
        }
    }

    /// Whether a later `null` clears `key`: Go sets a pointer, slice or map to nil, and ignores
    /// `null` for a string, number, boolean or embedded struct. betwixt's own sections
    /// (`runtime`, `access_log`, `accept_proxy_protocol`) are optional like gobetween's.
    fn null_clears(self, key: &str) -> bool {
        let keys: &[&str] = match self {
            Shape::Servers => return true,
            // A POST body's root is a server: one list serves both.
            Shape::Root => {
                return ["acme", "profiler", "servers", "runtime", "access_log"].contains(&key)
                    || SERVER_NULLABLE.contains(&key)
                    || key == "accept_proxy_protocol"
            }
            Shape::Server => return SERVER_NULLABLE.contains(&key) || key == "accept_proxy_protocol",
            Shape::Section("defaults") => &SERVER_NULLABLE[..4],
            Shape::Section("api") => &["basic_auth", "tls"],
            Shape::Section("tls") => &["ciphers", "acme_hosts"],
            Shape::Section("backends_tls") => &["ciphers", "root_ca_cert_path", "cert_path", "key_path"],
            Shape::Section("access") => &["rules"],
            Shape::Section("discovery") => &["static_list", "exec_command"],
            Shape::Section("healthcheck") => &["initial_status"],
            Shape::Section(_) => &[],
        };
        keys.contains(&key)
    }
}

enum Node {
    /// A string, number, literal or array: copied as written (arrays hold no sections).
    Plain(Range<usize>),
    /// `span` is `None` for an object the rewrite made by merging two.
    Object { span: Option<Range<usize>>, entries: Vec<Entry>, repeats: bool },
}

impl Node {
    /// Whether this object, or one inside it, repeats a key.
    fn repeats(&self) -> bool {
        matches!(self, Node::Object { repeats: true, .. })
    }
}

struct Entry {
    /// The key with its quotes.
    key: Range<usize>,
    value: Node,
}

/// The key's text, unescaped.
fn key_text<'t>(text: &'t [u8], key: &Range<usize>) -> Option<Cow<'t, str>> {
    let quoted = text.get(key.clone())?;
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains(&b'\\') {
        sonic_rs::from_slice::<String>(quoted).ok().map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// A JSON reader (RFC 8259) that builds objects' keys and spans and checks everything else.
struct Scan<'t> {
    text: &'t [u8],
    at: usize,
}

impl<'t> Scan<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// `depth`: objects and arrays open around the value.
    fn value(&mut self, shape: Shape, depth: usize) -> Option<Node> {
        self.blank();
        let start = self.at;
        match self.peek()? {
            b'{' => return self.object(shape, depth + 1),
            b'[' => self.array(depth + 1)?,
            b'"' => self.string()?,
            b't' => self.word(b"true")?,
            b'f' => self.word(b"false")?,
            b'n' => self.word(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        Some(Node::Plain(start..self.at))
    }

    fn object(&mut self, shape: Shape, depth: usize) -> Option<Node> {
        if depth > MAX_DEPTH {
            return None;
        }
        let start = self.at;
        self.at += 1;
        let (mut entries, mut seen, mut repeats) = (Vec::new(), HashSet::new(), false);
        self.blank();
        if !self.eat(b'}') {
            loop {
                self.blank();
                let key_start = self.at;
                if self.peek() != Some(b'"') {
                    return None;
                }
                self.string()?;
                let key = key_start..self.at;
                let name = shape.normalize(key_text(self.text, &key)?);
                self.blank();
                if !self.eat(b':') {
                    return None;
                }
                let value = self.value(shape.child(&name), depth)?;
                repeats |= value.repeats() | !seen.insert(name);
                entries.push(Entry { key, value });
                self.blank();
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        Some(Node::Object { span: Some(start..self.at), entries, repeats })
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.blank();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(Shape::Section(""), depth)?;
            self.blank();
            if self.eat(b']') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn string(&mut self) -> Option<()> {
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => match self.text.get(self.at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                    b'u' => {
                        let hex = self.text.get(self.at + 2..self.at + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 6;
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if !self.eat(b'0') {
            self.digits()?;
        }
        if self.eat(b'.') {
            self.digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            self.digits()?;
        }
        Some(())
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }
}

/// How a repeat was combined with what came before it.
enum Combined {
    Replaced,
    Merged,
    /// A later `null` that Go ignores.
    NullIgnored,
}

/// An object's key after its repeats are combined.
struct Slot {
    key: Range<usize>,
    /// Where the key first appeared.
    first: usize,
    value: Node,
}

struct Rewrite<'t> {
    source: &'t str,
    text: String,
    runs: Vec<(usize, usize, usize)>,
    warnings: Vec<ConfigWarning>,
    /// Warnings beyond `MAX_WARNINGS`, only counted.
    more: usize,
    /// Where each line of the source starts, once a warning needs it.
    lines: Option<Vec<usize>>,
}

impl<'t> Rewrite<'t> {
    fn copy(&mut self, span: Range<usize>) {
        self.runs.push((self.text.len(), span.start, span.len()));
        self.text.push_str(&self.source[span]);
    }

    fn key_text(&self, key: &Range<usize>) -> Cow<'t, str> {
        key_text(self.source.as_bytes(), key).unwrap_or_default()
    }

    /// Writes `node`, an object of `shape` at the dotted `path` (keys as written).
    fn node(&mut self, node: Node, shape: Shape, path: &str) {
        let entries = match node {
            Node::Plain(span) | Node::Object { span: Some(span), repeats: false, .. } => {
                return self.copy(span)
            }
            Node::Object { entries, .. } => entries,
        };
        self.text.push('{');
        for (i, slot) in self.combine(entries, shape, path).into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let name = self.key_text(&slot.key);
            let path = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            self.copy(slot.key);
            self.text.push(':');
            self.node(slot.value, shape.child(&shape.normalize(name)), &path);
        }
        self.text.push('}');
    }

    /// The object's keys with their repeats combined, each where it first appeared.
    fn combine(&mut self, entries: Vec<Entry>, shape: Shape, path: &str) -> Vec<Slot> {
        let mut slots: Vec<Slot> = Vec::with_capacity(entries.len());
        let mut index = HashMap::new();
        for Entry { key, value } in entries {
            let name = self.key_text(&key);
            let normal = shape.normalize(name.clone());
            let Some(&i) = index.get(&normal) else {
                index.insert(normal, slots.len());
                slots.push(Slot { first: key.start, key, value });
                continue;
            };
            let slot = &mut slots[i];
            let earlier = std::mem::replace(&mut slot.value, Node::Plain(0..0));
            let (value, how) = self.combine_values(shape, &normal, earlier, value);
            slot.value = value;
            let first = slot.first;
            if !matches!(how, Combined::NullIgnored) {
                slot.key = key.clone();
            }
            let what = match shape {
                Shape::Servers => "server",
                _ => "key",
            };
            let path = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            self.warn(path, key.start, first, |line| {
                let effect = match (how, shape.child(&normal)) {
                    (Combined::Merged, Shape::Servers) => "the servers of both are read",
                    (Combined::Merged, _) => "the two are merged, later keys winning",
                    (Combined::NullIgnored, _) => "the later null leaves the value as it was",
                    (Combined::Replaced, _) if shape == Shape::Servers => "the last one is used whole",
                    (Combined::Replaced, _) => "the last value is used",
                };
                format!("{what} `{name}` repeated (first at line {line}): {effect}, as gobetween reads it")
            });
        }
        slots
    }

    fn combine_values(&self, shape: Shape, key: &str, earlier: Node, later: Node) -> (Node, Combined) {
        let null = |node: &Node| matches!(node, Node::Plain(span) if &self.source[span.clone()] == "null");
        if shape == Shape::Servers {
            return (later, Combined::Replaced);
        }
        if null(&later) && !null(&earlier) && !shape.null_clears(key) {
            return (earlier, Combined::NullIgnored);
        }
        match (earlier, later) {
            (Node::Object { entries: mut first, .. }, Node::Object { entries: second, .. }) => {
                first.extend(second);
                (Node::Object { span: None, entries: first, repeats: true }, Combined::Merged)
            }
            (_, later) => (later, Combined::Replaced),
        }
    }

    /// A warning for the repeat at `at`; `message` is given the line of the key's first
    /// appearance, `first`. At most `MAX_WARNINGS`, then only counted.
    fn warn(&mut self, key: String, at: usize, first: usize, message: impl FnOnce(usize) -> String) {
        if self.warnings.len() >= MAX_WARNINGS {
            self.more += 1;
            return;
        }
        let source = self.source;
        let lines = self.lines.get_or_insert_with(|| {
            std::iter::once(0).chain(source.match_indices('\n').map(|(at, _)| at + 1)).collect()
        });
        let position = |at: usize| {
            let line = lines.partition_point(|&start| start <= at);
            (line, at - lines[line - 1] + 1)
        };
        let warning = ConfigWarning::at_key(key, message(position(first).0));
        let (line, column) = position(at);
        self.warnings.push(ConfigWarning { position: Some((line, column)), ..warning });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_as, parse_config, Format, Server};

    fn server(body: &str) -> String {
        format!("{{\"servers\": {{\"a\": {{{body}}}}}}}")
    }

    const STATIC: &str = "\"discovery\": {\"kind\": \"static\", \"static_list\": []}";

    #[test]
    fn text_without_repeats_is_read_as_it_is() {
        assert!(merge_repeated_keys(&server(&format!("\"bind\": \"127.0.0.1:1\", {STATIC}"))).is_none());
        // The same key in different objects, or in other case in a map, is no repeat.
        assert!(merge_repeated_keys("{\"servers\": {\"a\": {\"x\": 1}, \"A\": {\"x\": 1}}}").is_none());
        // Not JSON, or more than one value: the parser says why.
        assert!(merge_repeated_keys("{\"a\": 1, \"a\": 2").is_none());
        assert!(merge_repeated_keys("{\"a\": 1, \"a\": 2} {}").is_none());
    }

    #[test]
    fn the_last_value_wins_in_any_case_of_the_key() {
        let text = server(&format!("\"bind\": \"127.0.0.1:1\",\n \"BIND\": \"127.0.0.1:2\", {STATIC}"));
        let (config, warnings) = parse_config(&text, Format::Json).unwrap();
        assert_eq!(config.servers["a"].bind, "127.0.0.1:2");
        let w = warnings.iter().find(|w| w.message.contains("repeated")).unwrap();
        assert_eq!((w.key.as_deref(), w.position), (Some("servers.a.BIND"), Some((2, 2))), "{w}");
        assert!(w.message.contains("first at line 1") && w.message.contains("last value is used"), "{w}");
        // Escapes are read before keys are compared.
        let text = server(&format!("\"bind\": \"127.0.0.1:1\", \"b\\u0069nd\": \"127.0.0.1:3\", {STATIC}"));
        assert_eq!(parse_config(&text, Format::Json).unwrap().0.servers["a"].bind, "127.0.0.1:3");
    }

    #[test]
    fn sections_are_merged_key_by_key() {
        let text = server(&format!(
            "\"bind\": \"127.0.0.1:1\", {STATIC}, \"healthcheck\": {{\"kind\": \"ping\", \"fails\": 3, \"tls\": {{\"a\": 1}}}},\n\
             \"healthcheck\": {{\"interval\": \"2s\", \"fails\": 4}}, \"discovery\": {{\"static_list\": [\"127.0.0.1:9\"]}}"
        ));
        let (config, warnings) = parse_config(&text, Format::Json).unwrap();
        let server = &config.servers["a"];
        let check = server.healthcheck.as_ref().unwrap();
        assert_eq!(check.kind, crate::config::HealthcheckKind::Ping);
        assert_eq!(check.interval.as_ref().map(|i| i.to_string()).as_deref(), Some("2s"));
        assert_eq!(check.fails, Some(4));
        assert_eq!(server.discovery.static_list.as_deref(), Some(&["127.0.0.1:9".to_string()][..]));
        let keys: Vec<_> =
            warnings.iter().map(|w| (w.key.as_deref().unwrap(), w.position.unwrap().0)).collect();
        assert!(keys.contains(&("servers.a.healthcheck", 2)), "{keys:?}");
        assert!(keys.contains(&("servers.a.healthcheck.fails", 2)), "{keys:?}");
        assert!(keys.contains(&("servers.a.discovery", 2)), "{keys:?}");
        assert!(warnings.iter().any(|w| w.message.contains("merged")), "{warnings:?}");
    }

    #[test]
    fn servers_objects_add_up_and_a_server_named_again_replaces_the_first_whole() {
        let one = |port: u16, extra: &str| format!("{{\"bind\": \"127.0.0.1:{port}\", {extra}{STATIC}}}");
        let text = format!(
            "{{\"servers\": {{\"a\": {}, \"b\": {}}},\n \"Servers\": {{\"c\": {}, \"a\": {}}}}}",
            one(1, "\"balance\": \"iphash\", "),
            one(2, ""),
            one(3, ""),
            one(4, "")
        );
        let (config, warnings) = parse_config(&text, Format::Json).unwrap();
        assert_eq!(config.servers.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(config.servers["a"].bind, "127.0.0.1:4");
        assert_eq!(config.servers["a"].balance, None, "not merged with the first `a`");
        let warnings: Vec<_> = warnings.iter().filter(|w| w.message.contains("repeated")).collect();
        let keys: Vec<_> = warnings.iter().map(|w| w.key.as_deref().unwrap()).collect();
        assert_eq!(keys, ["Servers", "Servers.a"]);
        assert!(warnings[0].message.contains("servers of both"), "{}", warnings[0]);
        assert!(warnings[1].message.starts_with("server `a` repeated"), "{}", warnings[1]);
        // Map keys are exact: `A` is another server.
        let text = format!("{{\"servers\": {{\"a\": {}, \"A\": {}}}}}", one(1, ""), one(2, ""));
        assert_eq!(parse_config(&text, Format::Json).unwrap().0.servers.len(), 2);
    }

    #[test]
    fn a_later_null_clears_only_what_go_can_clear() {
        let text = format!(
            "{{\"bind\": \"127.0.0.1:1\", \"bind\": null, \"max_connections\": 5, \"max_connections\": null, \
             \"healthcheck\": {{\"kind\": \"ping\"}}, \"healthcheck\": null, \"balance\": null, \"balance\": \"iphash\", {STATIC}}}"
        );
        let (server, warnings): (Server, _) = parse_as(&text, Format::Json).unwrap();
        assert_eq!(server.bind, "127.0.0.1:1", "null leaves a string as it was");
        assert_eq!((server.max_connections, server.healthcheck), (None, None), "and clears a pointer");
        assert_eq!(server.balance, Some(crate::config::Balance::Iphash));
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].message.contains("null leaves the value"), "{}", warnings[0]);
    }

    #[test]
    fn null_servers_are_no_servers_as_go_decodes_them() {
        let (config, warnings) = parse_config("{\"servers\": null}", Format::Json).unwrap();
        assert!(config.servers.is_empty() && warnings.is_empty(), "{warnings:?}");
        // A later null clears the servers given before it.
        let text =
            format!("{{\"servers\": {{\"a\": {{\"bind\": \"127.0.0.1:1\", {STATIC}}}}}, \"servers\": null}}");
        let (config, warnings) = parse_config(&text, Format::Json).unwrap();
        assert!(config.servers.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn errors_after_a_rewrite_point_into_the_text_as_written() {
        let text = server(&format!(
            "\"bind\": \"127.0.0.1:1\", \"bind\": \"127.0.0.1:2\",\n  \"max_connections\": \"ten\", {STATIC}"
        ));
        let e = parse_config(&text, Format::Json).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("servers.a.max_connections"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
        // A check after parsing finds the value that was read, not the one it replaced.
        let text = server(&format!(
            "\"bind\": \"127.0.0.1:1\",\n {STATIC},\n \"bind\": \"nowhere\", \"x\": 1, \"x\": 2"
        ));
        let e = parse_config(&text, Format::Json).unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("servers.a.bind"), Some((3, 1))), "{e}");
    }

    #[test]
    fn repeat_warnings_are_bounded() {
        let pairs: String = (0..MAX_WARNINGS + 5).map(|i| format!("\"k{i}\": 1, \"k{i}\": 2, ")).collect();
        let merged = merge_repeated_keys(&format!("{{{pairs}\"servers\": {{}}}}")).unwrap();
        assert_eq!(merged.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(merged.warnings[MAX_WARNINGS].message, "5 more repeated keys not shown");
    }

    #[test]
    fn strings_and_arrays_are_copied_as_written() {
        let text = "{\"a\": \"{\\\"a\\\": 1}\", \"b\": [{\"c\": 1, \"c\": 2}, \"]\"], \"a\": \"\\u00e9}\"}";
        let merged = merge_repeated_keys(text).unwrap();
        assert_eq!(merged.text, "{\"a\":\"\\u00e9}\",\"b\":[{\"c\": 1, \"c\": 2}, \"]\"]}");
        assert_eq!(merged.warnings.len(), 1);
        assert_eq!(&text[merged.source_offset(merged.text.find("\"b\"").unwrap())..][..3], "\"b\"");
    }

    #[test]
    fn the_first_value_ends_where_go_stops_reading() {
        for (text, end) in [
            ("{\"a\": [1, {}]}trailing", 14),
            ("{}{\"x\": 1}", 2),
            (" null x", 5),
            ("[]", 2),
            ("-1.5e3,", 6),
            // Go too reads `0` and leaves the `1`.
            ("01", 1),
            ("\"a\\\"b\" \u{0}", 6),
        ] {
            assert_eq!(first_value_end(text.as_bytes()), Some(end), "{text}");
        }
        assert_eq!(first_value_end(b"{\"a\": 1}\xff\xfe"), Some(8));
        for text in ["", " ", "{\"a\": }", "{\"a\" 1}", "[1,]", "-", "1.", "nul", "\"\u{1}\"", "{\"a\": 1,}"]
        {
            assert_eq!(first_value_end(text.as_bytes()), None, "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(first_value_end(deep.as_bytes()), None);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(first_value_end(deep.as_bytes()), Some(deep.len()));
    }
}
