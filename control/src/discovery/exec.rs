//! `kind = "exec"`: runs `exec_command` (program and arguments) and reads its standard output
//! as backend lines (`host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]`), one
//! per line. A non-zero exit is a failed fetch; a line that is no backend is skipped with a
//! warning. The command runs in a process group of its own, killed whole at the timeout.

use super::lines::{collect, document_lines};
use super::{Found, SectionError, Source};
use crate::backend::BackendSpec;
use crate::command;
use crate::config::Discovery;
use std::time::Duration;

/// Output beyond this fails the fetch: no useful list is that long.
pub const MAX_OUTPUT: u64 = 16 << 20;

pub struct Exec {
    program: String,
    args: Vec<String>,
}

impl Exec {
    pub fn from_section(discovery: &Discovery) -> Result<Exec, SectionError> {
        match discovery.exec_command.as_deref() {
            Some([program, args @ ..]) if !program.is_empty() => {
                Ok(Exec { program: program.clone(), args: args.to_vec() })
            }
            _ => Err(SectionError::new("exec_command", "required: the program to run and its arguments")),
        }
    }
}

impl Source for Exec {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        let finished =
            command::run(&self.program, &self.args, MAX_OUTPUT).await.map_err(|e| e.to_string())?;
        if !finished.status.success() {
            return Err(format!("{:?} exited with {}", self.program, finished.status));
        }
        Ok(read_output(&String::from_utf8_lossy(&finished.stdout)))
    }
}

/// The backends of a command's output.
pub(crate) fn read_output(output: &str) -> Found {
    let (backends, notes) = collect(document_lines(output), &BackendSpec::read_line);
    // The notes quote the line; its number among the non-empty ones would mislead.
    Found { backends, notes: notes.into_iter().map(|(_, note)| note).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_are_left_out_and_garbage_is_noted() {
        let found = read_output("a:1 weight=3\n\nnot a backend\r\nb:2\r\n\n");
        let names: Vec<String> = found.backends.iter().map(|b| b.address()).collect();
        assert_eq!(names, ["a:1", "b:2"]);
        assert_eq!(found.backends[0].weight, 3);
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(found.notes[0].contains("\"not a backend\""), "{:?}", found.notes);
    }

    #[test]
    fn command_is_required() {
        let section = |command: Option<Vec<&str>>| Discovery {
            exec_command: command.map(|c| c.into_iter().map(String::from).collect()),
            ..Discovery::default()
        };
        assert!(Exec::from_section(&section(None)).is_err());
        assert!(Exec::from_section(&section(Some(vec![]))).is_err());
        assert!(Exec::from_section(&section(Some(vec![""]))).is_err());
        let exec = Exec::from_section(&section(Some(vec!["/bin/echo", "a:1"]))).unwrap();
        assert_eq!((exec.program.as_str(), exec.args.as_slice()), ("/bin/echo", &["a:1".to_string()][..]));
    }
}
