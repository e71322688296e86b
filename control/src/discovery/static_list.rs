//! `kind = "static"`: the backends are the `static_list` lines themselves.

use super::lines::collect;
use super::{Found, Source};
use crate::backend::BackendSpec;
use crate::config::Discovery;
use std::time::Duration;

/// The backends of a static list, and what was odd about its lines, by line index (see
/// `lines::collect`). No `static_list` at all is an empty list (gobetween stops with a crash
/// there instead).
pub fn read(discovery: &Discovery) -> (Vec<BackendSpec>, Vec<(usize, String)>) {
    collect(discovery.static_list.iter().flatten().map(String::as_str), &BackendSpec::read_line)
}

/// The backends to run; the notes were reported when the configuration was read.
pub fn backends(discovery: &Discovery) -> Vec<BackendSpec> {
    read(discovery).0
}

/// A static list as a discovery source: every fetch gives the same backends.
pub struct StaticList(Vec<BackendSpec>);

impl StaticList {
    pub fn from_section(discovery: &Discovery) -> StaticList {
        StaticList(backends(discovery))
    }
}

impl Source for StaticList {
    // Never waited for: a fetch is a copy.
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    // Never needed: a fetch cannot fail.
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        Ok(Found { backends: self.0.clone(), notes: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(lines: &[&str]) -> Discovery {
        Discovery { static_list: Some(lines.iter().map(|l| l.to_string()).collect()), ..Discovery::default() }
    }

    #[test]
    fn bad_lines_are_skipped_and_noted() {
        let (backends, notes) =
            read(&discovery(&["a:1", "nonsense", "b:2 priority=1 weight=2", "c:3 weight=0"]));
        let names: Vec<String> = backends.iter().map(|b| b.address()).collect();
        assert_eq!(names, ["a:1", "c:3"]);
        assert_eq!(backends[1].weight, 0);
        let indexes: Vec<usize> = notes.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 2]);
        assert!(notes[0].1.contains("line skipped"), "{notes:?}");
    }

    #[test]
    fn last_line_of_a_backend_wins() {
        let (backends, notes) = read(&discovery(&["a:1 weight=2", "b:1", "a:1 weight=7"]));
        assert_eq!(backends.len(), 2);
        assert_eq!((backends[0].host.as_str(), backends[0].weight), ("a", 7));
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].0, 2);
    }

    #[test]
    fn no_list_is_no_backend() {
        assert_eq!(read(&Discovery::default()), (Vec::new(), Vec::new()));
    }
}
