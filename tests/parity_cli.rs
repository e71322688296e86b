//! The command line as gobetween's (`src/main.go`, `src/cmd/*.go`): help without arguments,
//! `-v`, `from-consul -k/-s` and Consul's client environment, the `GOBETWEEN` environment
//! variable, `-e` with an unset variable, and a pidfile naming a running instance.

mod common;

use common::backends::{Backend, Behaviour};
use common::{
    binary, free_port, serve_http, serve_until_named_with_env, static_server, Betwixt, TempDir, SIGTERM,
};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

fn server_config(port: u16, backend: &str) -> String {
    static_server(port, "weight", &[backend.to_string()], "")
}

/// Runs betwixt with `args` and extra environment to completion and returns (exit code,
/// stdout, stderr). One that is still running after 10 s (it started serving instead of
/// answering) is killed and reported with code `None`.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = common::wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let code = if exited { out.status.code() } else { None };
    (code, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn no_arguments_prints_help_and_succeeds() {
    let (code, stdout, stderr) = run(&[], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Usage:") && stdout.contains("from-consul"), "{stdout}");
    // Flags without a configuration still print help and start nothing (gobetween: `-c` unset).
    let dir = TempDir::new("help");
    let pidfile = dir.0.join("p.pid");
    let (code, stdout, _) = run(&["-p", pidfile.to_str().unwrap(), "--shards", "1"], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Usage:"), "{stdout}");
    assert!(!pidfile.exists());
}

#[test]
fn version_prints_the_bare_version_number() {
    let (code, stdout, _) = run(&["-v"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, format!("{}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(run(&["--version"], &[]).1, stdout);
}

#[test]
fn gobetween_env_var_carries_the_arguments_as_json() {
    let dir = TempDir::new("envargs");
    let path = dir.write("c.toml", &server_config(1, "127.0.0.1:2"));
    let json = format!("[\"check\", \"{}\"]", path.display());
    let (code, stdout, stderr) = run(&[], &[("GOBETWEEN", &json)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("[servers.s]"), "{stdout}");
    assert!(stderr.contains("GOBETWEEN"), "the arguments' origin is reported: {stderr}");

    // The variable and command-line arguments together are refused, as by gobetween.
    let (code, _, stderr) = run(&["-v"], &[("GOBETWEEN", &json)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("only one allowed"), "{stderr}");
    // Not a JSON array of strings.
    let (code, _, stderr) = run(&[], &[("GOBETWEEN", "-c x.toml")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("GOBETWEEN"), "{stderr}");
    // Nested 100,000 deep: refused, not a stack overflow.
    let deep = "[".repeat(100_000);
    let (code, _, stderr) = run(&[], &[("GOBETWEEN", &deep)]);
    assert_eq!(code, Some(1), "{stderr}");
    // An empty value is no value; `[]` is no arguments: help.
    assert_eq!(run(&["-v"], &[("GOBETWEEN", "")]).0, Some(0));
    let (code, stdout, _) = run(&[], &[("GOBETWEEN", "[]")]);
    assert!(code == Some(0) && stdout.contains("Usage:"), "{stdout}");
}

/// gobetween's boolean flags are Go's, which also take a value after `=`; `-p ""` is no pidfile.
#[test]
fn boolean_flags_take_go_values_and_an_empty_pidfile_is_none() {
    assert_eq!(run(&["-v=true"], &[]).1, format!("{}\n", env!("CARGO_PKG_VERSION")));
    let (code, stdout, _) = run(&["--version=false"], &[]);
    assert!(code == Some(0) && stdout.contains("Usage:"), "no version: nothing to run, help");
    let dir = TempDir::new("go-bools");
    let path = dir.write(
        "c.toml",
        &server_config(free_port(), "127.0.0.1:2").replace("[servers", "# ${BX_TEST_E}\n[servers"),
    );
    let path = path.to_str().unwrap();
    for (flag, substituted) in
        [("-e=true", true), ("--use-config-env-vars=1", true), ("-e=false", false), ("-e", true)]
    {
        let (code, _, stderr) = run(&[flag, "check", path], &[("BX_TEST_E_UNSET", "")]);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert_eq!(stderr.contains("BX_TEST_E is not set"), substituted, "{flag}: {stderr}");
    }
    assert_eq!(run(&["-e=maybe", "check", path], &[]).0, Some(2));
    let (code, _, stderr) = run(&["-p", "", "check", path], &[]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn unset_variable_with_dash_e_is_empty_with_a_warning() {
    let dir = TempDir::new("unset");
    let path = dir.write(
        "c.toml",
        "[servers.a]\nbind = \"127.0.0.1:4${BX_SURELY_UNSET_PART}1\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:2\"]\n",
    );
    let (code, stdout, stderr) = run(&["-e", "check", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("bind = \"127.0.0.1:41\""), "{stdout}");
    assert!(stderr.contains("warning") && stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("BX_SURELY_UNSET_PART is not set"), "{stderr}");
}

#[test]
fn from_consul_defaults_short_flags_and_consul_environment() {
    let backend = Backend::start("consul", Behaviour::Named);
    let port = free_port();
    let (http, requests) = serve_http(server_config(port, &backend.line()));
    let host = format!("127.0.0.1:{http}");
    let head = || requests.recv_timeout(Duration::from_secs(1)).unwrap().to_lowercase();

    // No -k: the key is `gobetween`. The ACL token and namespace come from Consul's variables.
    let env = [("CONSUL_HTTP_TOKEN", "s3cret"), ("CONSUL_NAMESPACE", "team a")];
    assert!(serve_until_named_with_env(&["from-consul", &host], &env, port, "consul").0);
    let request = head();
    assert!(request.starts_with("get /v1/kv/gobetween?raw&ns=team%20a http/1.1"), "{request}");
    assert!(request.lines().any(|l| l == "x-consul-token: s3cret"), "{request}");

    // -k and -s, and a scheme given in the address.
    let args = ["from-consul", &host, "-k", "/lb/config", "-s", "http", "-f", "toml"];
    assert!(serve_until_named_with_env(&args, &[], port, "consul").0);
    assert!(head().starts_with("get /v1/kv/lb/config?raw http/1.1"));
    let address = format!("http://{host}");
    assert!(serve_until_named_with_env(&["from-consul", &address, "--key", "k"], &[], port, "consul").0);
    assert!(head().starts_with("get /v1/kv/k?raw http/1.1"));
}

fn write_pidfile(dir: &TempDir, pid: u32) -> std::path::PathBuf {
    dir.write("betwixt.pid", &pid.to_string())
}

#[test]
fn pidfile_naming_a_running_process_refuses_the_start() {
    let dir = TempDir::new("pid-running");
    let config = dir.write("c.toml", &server_config(free_port(), "127.0.0.1:2"));
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let pidfile = write_pidfile(&dir, other.id());
    let (code, _, stderr) =
        run(&["-c", config.to_str().unwrap(), "-p", pidfile.to_str().unwrap(), "--shards", "1"], &[]);
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("process with pid {} is still running", other.id())), "{stderr}");
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), other.id().to_string(), "left untouched");
}

/// Starts betwixt with `-p pidfile`, checks it took the file over, then that SIGTERM removes it.
fn starts_and_takes_over(pidfile: &std::path::Path) {
    let backend = Backend::start("p", Behaviour::Named);
    let port = free_port();
    let dir = TempDir::new("pid-run");
    let config = dir.write("c.toml", &server_config(port, &backend.line()));
    let pidfile_arg = pidfile.to_str().unwrap();
    let mut bx = Betwixt::start_file(&config, &["-p", pidfile_arg, "--shards", "1"], dir);
    assert!(common::wait_for_port(port, Duration::from_secs(10)), "{}", bx.log_text());
    assert_eq!(std::fs::read_to_string(pidfile).unwrap().trim(), bx.child.id().to_string());
    bx.signal(SIGTERM);
    assert!(bx.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", bx.log_text());
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

#[test]
fn stale_pidfiles_are_replaced() {
    let dir = TempDir::new("pid-stale");
    // A process that has exited.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    starts_and_takes_over(&write_pidfile(&dir, dead.id()));

    // A live process that started after the file was written: its pid was reused.
    let mut reused = Command::new("sleep").arg("30").spawn().unwrap();
    let pidfile = write_pidfile(&dir, reused.id());
    let file = std::fs::File::options().write(true).open(&pidfile).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(file);
    starts_and_takes_over(&pidfile);
    let _ = reused.kill();
    let _ = reused.wait();

    // An empty file.
    starts_and_takes_over(&dir.write("betwixt.pid", ""));
}
