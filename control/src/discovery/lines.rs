//! Lists of backend lines, as static lists, exec output and plaintext documents give them. As in
//! gobetween, a line that does not read as a backend is skipped with a note, and a backend listed
//! twice (same host and port) is one backend with the options of its last line.

use crate::backend::BackendSpec;
use std::collections::hash_map::{Entry, HashMap};

/// Reads one line: the backend and an optional note about a value read loosely, or why the
/// line is no backend.
pub type LineReader<'a> = dyn Fn(&str) -> Result<(BackendSpec, Option<String>), String> + 'a;

/// The backends of `lines` read with `read`, and what was odd about them, by line index.
pub fn collect<'l>(
    lines: impl IntoIterator<Item = &'l str>,
    read: &LineReader<'_>,
) -> (Vec<BackendSpec>, Vec<(usize, String)>) {
    let mut backends: Vec<BackendSpec> = Vec::new();
    // Where each (host, port) sits in `backends`: lists of 100,000 lines must stay linear.
    let mut positions: HashMap<(String, u16), usize> = HashMap::new();
    let mut notes = Vec::new();
    for (index, line) in lines.into_iter().enumerate() {
        match read(line) {
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

/// The lines of a document that exec and plaintext discovery read: split at `\n`, empty lines
/// left out without a note (as gobetween does; a line of blanks is still read, and skipped).
pub fn document_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|line| !line.is_empty())
}
