//! SNI routing for tcp servers (`[servers.NAME.sni]`): which backends may take a client, given
//! the server name of its TLS ClientHello. The data plane reads the name without terminating
//! TLS; this module decides, with gobetween's rules (its `balance/middleware/sni.go`):
//!
//! - a backend matches when its `sni=` equals the client's name, ignoring case (`exact`), or
//!   when its `sni=` is a regular expression found in the client's name (`regexp`; betwixt
//!   ignores case here too, gobetween does not). A client without a name is the empty name:
//!   with `exact` it matches the backends without `sni=`; with `regexp` those too, and every
//!   pattern that matches the empty string.
//! - if any backend matches, the strategy chooses among the matching ones only;
//! - else `unexpected_hostname_strategy` decides: `reject` closes the client, `any` lets the
//!   strategy choose among all backends, `default` among the backends without `sni=`, except
//!   that a client without a name is closed.
//!
//! Cost per connection: `exact` is one hash lookup (the groups are built with the snapshot);
//! `regexp` tries each backend's pattern, O(backends).

use crate::balance::Candidates;
use crate::config::{GoDuration, Sni};
use crate::snapshot::Backend;
use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// gobetween's default `read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The most memory one backend's compiled pattern may take (the regex crate's own bound).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    Exact,
    Regexp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexpected {
    Default,
    Reject,
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SniSettings {
    /// Time a client has to send its whole ClientHello.
    pub read_timeout: Duration,
    pub matching: Matching,
    pub unexpected: Unexpected,
}

/// A bad value in `[sni]`, with its key.
#[derive(Debug)]
pub struct SniError {
    pub field: &'static str,
    pub message: String,
}

impl SniSettings {
    /// Reads the section with gobetween's defaults for empty or left-out keys. The note says
    /// how a `read_timeout` of zero is read.
    pub fn from_section(section: &Sni) -> Result<(SniSettings, Option<String>), SniError> {
        let matching = match section.hostname_matching_strategy.as_deref().unwrap_or_default() {
            "" | "exact" => Matching::Exact,
            "regexp" => Matching::Regexp,
            other => {
                return Err(SniError {
                    field: "hostname_matching_strategy",
                    message: format!("unknown strategy {other:?} (use exact or regexp)"),
                })
            }
        };
        let unexpected = match section.unexpected_hostname_strategy.as_deref().unwrap_or_default() {
            "" | "default" => Unexpected::Default,
            "reject" => Unexpected::Reject,
            "any" => Unexpected::Any,
            other => {
                return Err(SniError {
                    field: "unexpected_hostname_strategy",
                    message: format!("unknown strategy {other:?} (use default, reject or any)"),
                })
            }
        };
        // gobetween's "0" is a deadline already passed: every client would fail. betwixt
        // reads it as the default rather than as "no limit", so a peek is always bounded.
        let (read_timeout, note) = match section.read_timeout.as_deref() {
            Some(GoDuration(d)) if d.is_zero() => (
                DEFAULT_READ_TIMEOUT,
                Some(
                    "\"0\" would time out every client at once (gobetween); waiting the default 2s"
                        .to_string(),
                ),
            ),
            Some(GoDuration(d)) => (*d, None),
            None => (DEFAULT_READ_TIMEOUT, None),
        };
        Ok((SniSettings { read_timeout, matching, unexpected }, note))
    }
}

/// The backends of one snapshot grouped for SNI matching.
#[derive(Debug)]
pub struct SniRoutes {
    settings: SniSettings,
    /// `exact`: lower-cased name → indexes of the backends with that `sni=`, ascending.
    named: HashMap<String, Vec<usize>>,
    /// `regexp`: each named backend's pattern; a pattern that does not compile matches nothing.
    patterns: Vec<(usize, Option<Regex>)>,
    /// Backends without `sni=`, ascending.
    unnamed: Vec<usize>,
}

impl SniRoutes {
    /// Groups `backends` (a snapshot's, indexed as there).
    pub fn build(server: &str, settings: &SniSettings, backends: &[Arc<Backend>]) -> SniRoutes {
        let mut routes = SniRoutes {
            settings: settings.clone(),
            named: HashMap::new(),
            patterns: Vec::new(),
            unnamed: Vec::new(),
        };
        for (index, backend) in backends.iter().enumerate() {
            let Some(name) = backend.spec.sni.as_deref().filter(|n| !n.is_empty()) else {
                routes.unnamed.push(index);
                continue;
            };
            match settings.matching {
                Matching::Exact => routes.named.entry(name.to_lowercase()).or_default().push(index),
                Matching::Regexp => {
                    let pattern = RegexBuilder::new(name)
                        .case_insensitive(true)
                        .size_limit(PATTERN_SIZE_LIMIT)
                        .build()
                        .map_err(|e| {
                            crate::log_limited!(
                                log::Level::Warn,
                                "server {server}: backend {}: sni {name:?} is not a regular expression, it matches no client: {e}",
                                backend.spec.address()
                            )
                        })
                        .ok();
                    routes.patterns.push((index, pattern));
                }
            }
        }
        routes
    }

    /// The backends a client asking for `name` may go to (`None`: it sent no name).
    pub fn candidates(&self, name: Option<&str>) -> Candidates<'_> {
        let name = name.unwrap_or_default();
        let matched = match self.settings.matching {
            Matching::Exact if name.is_empty() => Candidates::Only(Cow::Borrowed(&self.unnamed)),
            Matching::Exact => Candidates::Only(
                self.named
                    .get(&name.to_lowercase())
                    .map_or(Cow::Borrowed(&[][..]), |group| Cow::Borrowed(group)),
            ),
            Matching::Regexp => {
                let mut found: Vec<usize> = Vec::new();
                if name.is_empty() {
                    found.extend_from_slice(&self.unnamed);
                }
                found.extend(self.patterns.iter().filter_map(|(index, pattern)| {
                    pattern.as_ref().is_some_and(|p| p.is_match(name)).then_some(*index)
                }));
                found.sort_unstable();
                Candidates::Only(Cow::Owned(found))
            }
        };
        if !matched.is_empty() {
            return matched;
        }
        match self.settings.unexpected {
            Unexpected::Reject => Candidates::none(),
            Unexpected::Any => Candidates::All,
            Unexpected::Default if name.is_empty() => Candidates::none(),
            Unexpected::Default => Candidates::Only(Cow::Borrowed(&self.unnamed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendSpec;
    use crate::stats::Counters;

    fn backends(snis: &[Option<&str>]) -> Vec<Arc<Backend>> {
        snis.iter()
            .enumerate()
            .map(|(i, sni)| {
                let mut spec = BackendSpec::new("127.0.0.1", 1000 + i as u16);
                spec.sni = sni.map(str::to_string);
                Arc::new(Backend { spec, addrs: Vec::new(), counters: Arc::new(Counters::new(1)) })
            })
            .collect()
    }

    fn routes(matching: Matching, unexpected: Unexpected, snis: &[Option<&str>]) -> SniRoutes {
        let settings = SniSettings { read_timeout: DEFAULT_READ_TIMEOUT, matching, unexpected };
        SniRoutes::build("s", &settings, &backends(snis))
    }

    fn only(c: Candidates) -> Option<Vec<usize>> {
        match c {
            Candidates::All => None,
            Candidates::Only(list) => Some(list.to_vec()),
        }
    }

    #[test]
    fn exact_ignores_case_and_falls_back_per_strategy() {
        let snis = [Some("a.example"), None, Some("A.EXAMPLE"), Some("b.example")];
        let r = routes(Matching::Exact, Unexpected::Default, &snis);
        assert_eq!(only(r.candidates(Some("A.Example"))), Some(vec![0, 2]));
        assert_eq!(only(r.candidates(Some("b.example"))), Some(vec![3]));
        // No match: the backends without sni=.
        assert_eq!(only(r.candidates(Some("c.example"))), Some(vec![1]));
        // No name at all matches the backends without sni= (gobetween compares "" to "").
        assert_eq!(only(r.candidates(None)), Some(vec![1]));
        let r = routes(Matching::Exact, Unexpected::Reject, &snis);
        assert_eq!(only(r.candidates(Some("c.example"))), Some(vec![]));
        let r = routes(Matching::Exact, Unexpected::Any, &snis);
        assert_eq!(only(r.candidates(Some("c.example"))), None);
        // default with no name and no unnamed backend: nobody.
        let r = routes(Matching::Exact, Unexpected::Default, &[Some("a")]);
        assert_eq!(only(r.candidates(None)), Some(vec![]));
        assert_eq!(only(r.candidates(Some("b"))), Some(vec![]));
    }

    #[test]
    fn regexp_is_unanchored_and_ignores_case() {
        let snis = [Some(r"^api\..*"), None, Some("example"), Some("(unclosed")];
        let r = routes(Matching::Regexp, Unexpected::Reject, &snis);
        assert_eq!(only(r.candidates(Some("API.example.org"))), Some(vec![0, 2]));
        assert_eq!(only(r.candidates(Some("www.example.org"))), Some(vec![2]));
        assert_eq!(only(r.candidates(Some("other"))), Some(vec![]));
        // An empty name: the unnamed backends, and patterns that match "".
        assert_eq!(only(r.candidates(None)), Some(vec![1]));
        let r = routes(Matching::Regexp, Unexpected::Default, &[Some(".*"), None]);
        assert_eq!(only(r.candidates(None)), Some(vec![0, 1]));
        assert_eq!(only(r.candidates(Some("x"))), Some(vec![0]));
    }

    #[test]
    fn section_defaults_and_errors() {
        let (s, note) = SniSettings::from_section(&Sni::default()).unwrap();
        assert_eq!(
            s,
            SniSettings {
                read_timeout: DEFAULT_READ_TIMEOUT,
                matching: Matching::Exact,
                unexpected: Unexpected::Default
            }
        );
        assert!(note.is_none());
        let zero = Sni { read_timeout: Some(GoDuration::ZERO.into()), ..Sni::default() };
        assert!(SniSettings::from_section(&zero).unwrap().1.is_some());
        let bad = Sni { hostname_matching_strategy: Some("glob".into()), ..Sni::default() };
        assert_eq!(SniSettings::from_section(&bad).unwrap_err().field, "hostname_matching_strategy");
        let bad = Sni { unexpected_hostname_strategy: Some("drop".into()), ..Sni::default() };
        assert_eq!(SniSettings::from_section(&bad).unwrap_err().field, "unexpected_hostname_strategy");
    }
}
