//! Command line, compatible with gobetween's: `betwixt -c FILE`, `from-file`, `from-url`,
//! `from-consul`, the `GOBETWEEN` environment variable, plus `check` and `--shards`.

use betwixt_control::config::depth::check_json_depth;
use std::ffi::OsString;

mod definition;
pub use definition::{Cli, Command};

/// The arguments to parse: the command line, or, as in gobetween, a JSON array of strings in the
/// `GOBETWEEN` environment variable (for containers), never both.
pub fn arguments() -> Result<Vec<OsString>, String> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let Some(env) = std::env::var_os("GOBETWEEN").filter(|v| !v.is_empty()) else {
        return Ok(args);
    };
    if args.len() > 1 {
        return Err("passed GOBETWEEN env var and command-line arguments: only one allowed".into());
    }
    let env = env.to_str().ok_or("the GOBETWEEN env var is not valid UTF-8")?;
    let not_a_list = |e: &dyn std::fmt::Display| {
        format!("error converting GOBETWEEN env var to parameters (a JSON array of strings): {e}")
    };
    // The parser recurses once per level: bound the depth before it runs.
    check_json_depth(env).map_err(|e| not_a_list(&e.message))?;
    // `null` is an empty list, as Go decodes it.
    let list: Option<Vec<String>> = sonic_rs::from_str(env).map_err(|e| not_a_list(&e))?;
    let list = list.unwrap_or_default();
    eprintln!("betwixt: using parameters from the GOBETWEEN env var: {list:?}");
    args.truncate(1);
    if args.is_empty() {
        args.push("betwixt".into());
    }
    args.extend(list.into_iter().map(OsString::from));
    Ok(args)
}
