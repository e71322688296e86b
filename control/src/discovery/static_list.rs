//! `kind = "static"`: the backends are the `static_list` lines themselves.

use crate::backend::BackendSpec;
use crate::config::Discovery;

pub fn backends(discovery: &Discovery) -> Vec<BackendSpec> {
    let mut list = discovery.static_list.clone().unwrap_or_default();
    // A backend listed twice is one backend (identity is host:port); the first line wins.
    let mut seen = std::collections::HashSet::new();
    list.retain(|b| seen.insert((b.host.clone(), b.port)));
    list
}
