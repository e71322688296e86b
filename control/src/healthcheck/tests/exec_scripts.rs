//! `exec` checks against real shell scripts.

use super::super::{check, Target};
use super::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes an executable script into a fresh directory; returns its path.
fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("betwixt-exec-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("check.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn exec_settings(command: &Path, timeout_ms: u64) -> CheckSettings {
    exec_expecting(command, timeout_ms, Some("1"), Some("0"))
}

fn exec_expecting(
    command: &Path,
    timeout_ms: u64,
    positive: Option<&str>,
    negative: Option<&str>,
) -> CheckSettings {
    let raw = Healthcheck {
        kind: HealthcheckKind::Exec,
        exec_command: Some(command.display().to_string()),
        exec_expected_positive_output: positive.map(Into::into),
        exec_expected_negative_output: negative.map(Into::into),
        ..Default::default()
    };
    let mut s = CheckSettings::from_section(&raw).unwrap();
    s.timeout = Duration::from_millis(timeout_ms);
    s
}

fn target() -> Target {
    Target { host: "backend.example".into(), port: 8080, addrs: Vec::new() }
}

#[tokio::test]
async fn outputs_decide() {
    // The script sees HOST PORT as its arguments.
    let positive = script("positive", r#"[ "$1 $2" = "backend.example 8080" ] && echo " 1 " || echo 0"#);
    assert!(check(&exec_settings(&positive, 5000), &target()).await.unwrap().is_ok());
    let wrong_target = Target { port: 8081, ..target() };
    assert!(check(&exec_settings(&positive, 5000), &wrong_target).await.unwrap().is_err());

    let negative = script("negative", "echo 0");
    assert!(check(&exec_settings(&negative, 5000), &target()).await.unwrap().is_err());
    // Neither output: no verdict, as in gobetween (the backend stays as it is).
    let garbage = script("garbage", "echo 'is it up? who knows'");
    assert_eq!(check(&exec_settings(&garbage, 5000), &target()).await, None);
    let failing = script("failing", "echo 1; exit 3");
    assert!(check(&exec_settings(&failing, 5000), &target()).await.unwrap().is_err());
    let missing = PathBuf::from("/nonexistent/betwixt-check");
    assert!(check(&exec_settings(&missing, 5000), &target()).await.unwrap().is_err());
}

#[tokio::test]
async fn outputs_written_for_gobetweens_exact_comparison_still_match() {
    // gobetween compares the output exactly, so its users write the newline `echo` prints.
    let echo = script("echo-newline", "echo 1");
    let with_newline = exec_expecting(&echo, 5000, Some("1\n"), Some("0\n"));
    assert_eq!(check(&with_newline, &target()).await, Some(Ok(())));
    let zero = script("echo-zero", "echo 0");
    let with_newline_zero = exec_expecting(&zero, 5000, Some("1\n"), Some("0\n"));
    assert!(check(&with_newline_zero, &target()).await.unwrap().is_err());
    // Without a positive output, as gobetween reads it: a command that prints nothing passes.
    let silent = script("silent", "exit 0");
    assert_eq!(check(&exec_expecting(&silent, 5000, None, None), &target()).await, Some(Ok(())));
    assert_eq!(check(&exec_expecting(&echo, 5000, None, None), &target()).await, None);
    // Without a command every check fails.
    let mut no_command = exec_expecting(&echo, 5000, Some("1"), None);
    no_command.raw.exec_command = None;
    assert!(check(&no_command, &target()).await.unwrap().is_err());
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_the_timeout() {
    let dir = std::env::temp_dir().join(format!("betwixt-exec-{}-hang-pid", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let _ = std::fs::remove_file(&pidfile);
    let hang = script("hang", &format!("sleep 30 & echo $! > {}\nwait\necho 1", pidfile.display()));
    let started = Instant::now();
    assert!(check(&exec_settings(&hang, 300), &target()).await.unwrap().is_err());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "check took {took:?}");
    // The script's own child (the sleep) is gone too.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(2);
    while proc_dir.exists() && !is_zombie(&proc_dir) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!proc_dir.exists() || is_zombie(&proc_dir), "sleep {} survived", pid.trim());
}

fn is_zombie(proc_dir: &std::path::Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| stat.contains(") Z "))
}

#[tokio::test]
async fn hundreds_of_slow_checks_run_side_by_side() {
    let slow = script("slow", "sleep 0.5; echo 1");
    let settings = std::sync::Arc::new(exec_settings(&slow, 10_000));
    let started = Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    for port in 0..200u16 {
        let settings = settings.clone();
        checks.spawn(async move { check(&settings, &Target { port, ..target() }).await.unwrap().is_ok() });
    }
    let mut passed = 0;
    while let Some(result) = checks.join_next().await {
        passed += usize::from(result.unwrap());
    }
    assert_eq!(passed, 200);
    // One after another they would take 100 s.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
