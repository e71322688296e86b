//! `kind = "static"`: the backends are the `static_list` lines themselves.

use crate::backend::BackendSpec;
use crate::config::Discovery;
use std::collections::hash_map::{Entry, HashMap};

/// The backends of a static list, and what was odd about its lines, by line index. As in
/// gobetween, a line that does not read as a backend is skipped, and a backend listed twice
/// (same host and port) is one backend with the options of its last line. No `static_list` at
/// all is an empty list (gobetween stops with a crash there instead).
pub fn read(discovery: &Discovery) -> (Vec<BackendSpec>, Vec<(usize, String)>) {
    let mut backends: Vec<BackendSpec> = Vec::new();
    // Where each (host, port) sits in `backends`: lists of 100,000 lines must stay linear.
    let mut positions: HashMap<(String, u16), usize> = HashMap::new();
    let mut notes = Vec::new();
    for (index, line) in discovery.static_list.iter().flatten().enumerate() {
        match BackendSpec::read_line(line) {
            Err(why) => notes.push((index, format!("{why}: line skipped"))),
            Ok((spec, note)) => {
                notes.extend(note.map(|note| (index, note)));
                match positions.entry((spec.host.clone(), spec.port)) {
                    Entry::Occupied(earlier) => {
                        notes.push((
                            index,
                            format!("backend {} listed again: this line wins", spec.address()),
                        ));
                        backends[*earlier.get()] = spec;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(backends.len());
                        backends.push(spec);
                    }
                }
            }
        }
    }
    (backends, notes)
}

/// The backends to run; the notes were reported when the configuration was read.
pub fn backends(discovery: &Discovery) -> Vec<BackendSpec> {
    read(discovery).0
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
