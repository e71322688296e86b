//! dist/betwixt.service, unchanged, under a real systemd: systemd 252 booted as PID 1 of a
//! container by `systemd-nspawn` (package systemd-container), with `systemctl` and the journal
//! as the witnesses of what systemd saw (docs/systemd.md).
//!
//! The container's root is an overlay of this machine's root file system whose changes go to a
//! temporary directory (as in tests/packaging.rs): no image to build, and the unit, the
//! configuration, a sysusers.d entry for the unit's user and a boot target that starts nothing
//! but the basic system are written into that directory before the boot. The binary under test
//! is bind-mounted read-only as /usr/local/bin/betwixt, the unit's path. The container shares
//! this machine's network (betwixt binds 127.0.0.1 on free ports and the backends are the
//! tests'), but has its own mount and pid namespaces and its own /run; nspawn and the container
//! run in a cgroup of their own, removed afterwards. Needs root, unshare, nsenter, mount and
//! systemd-nspawn.

mod common;

use common::backends::{Backend, Behaviour};
use common::{ask_name, free_port, wait_until, TempDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const LONG: Duration = Duration::from_secs(30);

/// In fresh mount namespace: joins the cgroups $3..., mounts the overlay (this machine's root,
/// changes in $1/upper) at $1/root and a private /run (nspawn keeps its lock and propagation
/// directories there), then boots systemd in the container with betwixt ($2) bind-mounted.
/// SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: the container gets a pure cgroup v2 hierarchy, as
/// current distributions boot with, whatever layout this machine has.
const BOOT: &str = r#"
set -e
dir=$1 binary=$2
shift 2
for cgroup in "$@"; do mkdir "$cgroup"; echo $$ > "$cgroup/cgroup.procs"; done
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
mount -t tmpfs tmpfs /run
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
exec systemd-nspawn --quiet --register=no --keep-unit --machine=betwixt-test \
    --directory="$dir/root" --bind-ro="$binary:/usr/local/bin/betwixt" \
    --boot -- --unit=betwixt-test.target
"#;

/// The boot target: the basic system (journald, sysusers, tmpfiles) and nothing of what this
/// machine itself would start.
const TARGET: &str =
    "[Unit]\nDescription=betwixt under test\nRequires=sysinit.target\nAfter=sysinit.target\n";

/// A booted container; shut down (and its cgroups removed) on drop.
struct Machine {
    nspawn: Child,
    /// PID 1 of the container, as this machine sees it.
    init: i32,
    cgroups: Vec<PathBuf>,
    dir: TempDir,
}

impl Machine {
    /// Boots the container with `config` as /etc/betwixt/betwixt.toml, waits until systemd
    /// has booted, and turns systemd's debug log on (it logs every notify message it gets).
    fn boot(tag: &str, config: &str) -> Machine {
        let dir = TempDir::new(tag);
        let upper = dir.0.join("upper");
        let write = |path: &str, text: &str| {
            let path = upper.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let unit = std::fs::read_to_string(Path::new(ROOT).join("dist/betwixt.service")).unwrap();
        write("etc/systemd/system/betwixt.service", &unit);
        write("etc/systemd/system/betwixt-test.target", TARGET);
        write("etc/sysusers.d/betwixt.conf", "u betwixt - \"betwixt\" /nonexistent /usr/sbin/nologin\n");
        write("etc/betwixt/betwixt.toml", config);
        for sub in ["work", "root"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        let cgroups = own_cgroups(&format!("betwixt-systemd-{}-{}", std::process::id(), free_port()));
        let console = std::fs::File::create(dir.0.join("console.log")).unwrap();
        let nspawn = Command::new("unshare")
            .args(["--mount", "--", "sh", "-c", BOOT, "sh"])
            .arg(&dir.0)
            .arg(common::binary())
            .args(&cgroups)
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("unshare is installed");
        let mut machine = Machine { nspawn, init: 0, cgroups, dir };
        let booted = wait_until(LONG, || {
            // nspawn forks more than once before systemd runs: look until a child is a PID 1.
            if machine.init == 0 {
                machine.init = container_init(machine.nspawn.id() as i32).unwrap_or(0);
            }
            machine.init != 0 && {
                let state = machine.run("systemctl is-system-running");
                let state = String::from_utf8_lossy(&state.stdout);
                state.starts_with("running") || state.starts_with("degraded")
            }
        });
        assert!(booted, "systemd did not boot; console:\n{}", machine.console());
        machine.ok("systemd-analyze log-level debug");
        machine
    }

    /// Runs `script` with sh inside the container (all its namespaces, its root).
    fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `script`, which must succeed; returns its output.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "`{script}` failed in the container:\n{text}\njournal:\n{}",
            self.journal()
        );
        text
    }

    /// The unit's properties, as `systemctl show` tells them.
    fn show(&self) -> BTreeMap<String, String> {
        let props = "ActiveState,SubState,Result,MainPID,\
                     StatusText,NRestarts,WatchdogUSec,Type,NotifyAccess";
        self.ok(&format!("systemctl show -p {props} betwixt"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn prop(&self, name: &str) -> String {
        self.show().remove(name).unwrap_or_default()
    }

    /// The unit's journal: betwixt's log and systemd's (debug) messages about the unit.
    fn journal(&self) -> String {
        let out = self.run("journalctl --no-pager -o cat -u betwixt");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the journal has a line containing `text` after `skip` such lines; returns
    /// the journal.
    fn journal_until(&self, text: &str, skip: usize) -> String {
        let mut journal = String::new();
        let found = wait_until(LONG, || {
            journal = self.journal();
            journal.lines().filter(|l| l.contains(text)).count() > skip
        });
        assert!(found, "no `{text}` in the journal:\n{journal}");
        journal
    }

    /// Waits until `systemctl show` says `name` is `value`.
    fn wait_prop(&self, name: &str, value: &str, limit: Duration) {
        let mut last = String::new();
        let reached = wait_until(limit, || {
            last = self.prop(name);
            last == value
        });
        assert!(reached, "{name} stayed {last}, not {value}; journal:\n{}", self.journal());
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("console.log")).unwrap_or_default()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM to nspawn: an orderly shutdown of the container. Failing that, killing the
        // container's PID 1 ends every process in it.
        signal(self.nspawn.id() as i32, SIGTERM);
        let down = wait_until(LONG, || matches!(self.nspawn.try_wait(), Ok(Some(_))));
        if !down {
            if self.init != 0 {
                signal(self.init, SIGKILL);
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // Innermost first; a cgroup is removable once its last process has gone.
        for cgroup in &self.cgroups {
            wait_until(Duration::from_secs(5), || remove_cgroup(cgroup));
        }
    }
}

/// New cgroups named `name`, under this process's own, in the hierarchies nspawn uses: the
/// cgroup v2 one, and the v1 `name=systemd` one of a hybrid layout.
fn own_cgroups(name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let mount = match (id, controllers) {
            ("0", "") if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() => {
                "/sys/fs/cgroup/unified"
            }
            ("0", "") => "/sys/fs/cgroup",
            (_, "name=systemd") => "/sys/fs/cgroup/systemd",
            _ => continue,
        };
        dirs.push(Path::new(mount).join(path.trim_start_matches('/')).join(name));
    }
    assert!(!dirs.is_empty(), "no cgroup hierarchy for nspawn in:\n{own}");
    dirs
}

/// Removes `cgroup` and the cgroups nspawn and the container made below it; true once gone.
fn remove_cgroup(cgroup: &Path) -> bool {
    fn below(dir: &Path, all: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                below(&entry.path(), all);
            }
        }
        all.push(dir.to_path_buf());
    }
    let mut all = Vec::new();
    below(cgroup, &mut all);
    for dir in &all {
        let _ = std::fs::remove_dir(dir);
    }
    !cgroup.exists()
}

/// The child of `pid` that is PID 1 of its own pid namespace.
fn container_init(pid: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().filter_map(|c| c.parse().ok()).find(|child: &i32| {
        let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
        status.lines().any(|l| l.starts_with("NSpid:") && l.split_whitespace().nth(2) == Some("1"))
    })
}

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

fn signal(pid: i32, signal: i32) {
    // SAFETY: plain kill(2) of a process this test started (nspawn or the container's PID 1).
    unsafe { kill(pid, signal) };
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

/// One server per (name, port, backend).
fn config(servers: &[(&str, u16, &Backend)]) -> String {
    servers
        .iter()
        .map(|(name, port, backend)| {
            format!(
                "[servers.{name}]\nbind = \"127.0.0.1:{port}\"\n[servers.{name}.discovery]\n\
                 kind = \"static\"\nstatic_list = [\"{}\"]\n",
                backend.line()
            )
        })
        .collect()
}

/// A container whose betwixt was started with `systemctl start`, serving one server on the
/// returned port with the returned backend `b1`.
fn started(tag: &str) -> (Machine, u16, Backend) {
    let backend = Backend::start("b1", Behaviour::Named);
    let port = free_port();
    let machine = Machine::boot(tag, &config(&[("s", port, &backend)]));
    machine.ok("systemctl start betwixt");
    (machine, port, backend)
}

/// How many journal lines say systemd got `message` from betwixt.
fn notifications(journal: &str, message: &str) -> usize {
    journal.lines().filter(|l| l.contains("Got notification message from PID") && l.contains(message)).count()
}

#[test]
fn the_unit_starts_when_ready_reloads_and_stops_under_systemd() {
    let (b1, b2) = (Backend::start("b1", Behaviour::Named), Backend::start("b2", Behaviour::Named));
    let (port, added) = (free_port(), free_port());
    let machine = Machine::boot("systemd-real", &config(&[("s", port, &b1)]));

    // Type=notify: `systemctl start` returns once systemd got READY=1, and by then the server
    // answers through its backend, at the first try.
    let started = Instant::now();
    machine.ok("systemctl start betwixt");
    println!("systemctl start took {:?}", started.elapsed());
    assert_eq!(ask_name(port).as_deref(), Some("b1"), "active before serving");
    let show = machine.show();
    assert_eq!(show["ActiveState"], "active", "{show:?}");
    assert_eq!(show["SubState"], "running", "{show:?}");
    assert_eq!(show["Type"], "notify");
    assert_eq!(show["NotifyAccess"], "all");
    assert_eq!(show["WatchdogUSec"], "10s");
    // STATUS= reached systemd.
    assert_eq!(show["StatusText"], "serving");
    let main = show["MainPID"].clone();
    assert_eq!(machine.ok("cat /run/betwixt/betwixt.pid").trim(), main, "pidfile");
    // The unit's user, its hardening and its limits let betwixt run: it runs as that user.
    assert_eq!(machine.ok(&format!("stat -c %U /proc/{main}")).trim(), "betwixt");
    let journal = machine.journal();
    let ready = journal.find("READY=1, STATUS=serving").expect("no READY=1 in the journal");
    let running = journal.find("Changed start -> running").expect("no start -> running in the journal");
    assert!(ready < running, "running before READY=1:\n{journal}");

    // `systemctl reload` with a server added: RELOADING=1 (with MONOTONIC_USEC=) and READY=1
    // reach systemd, the new server serves, the main process stays.
    machine.ok(&format!("cat >> /etc/betwixt/betwixt.toml <<'EOF'\n{}EOF", config(&[("s2", added, &b2)])));
    machine.ok("systemctl reload betwixt");
    let journal = machine.journal_until("Changed reload -> running", 0);
    let reloading = journal.find("(RELOADING=1, MONOTONIC_USEC=").unwrap_or_else(|| panic!("{journal}"));
    assert!(
        journal[reloading..].contains("(READY=1, STATUS=serving)"),
        "no READY=1 after RELOADING=1:\n{journal}"
    );
    // systemd 252 ends the reload job when ExecReload's kill exits, which may be before
    // betwixt has applied the configuration: wait for it.
    assert!(wait_until(LONG, || ask_name(added).as_deref() == Some("b2")), "s2 does not serve");
    assert_eq!(ask_name(port).as_deref(), Some("b1"));
    let show = machine.show();
    assert_eq!(
        (show["ActiveState"].as_str(), show["MainPID"].as_str()),
        ("active", main.as_str()),
        "{show:?}"
    );

    // `systemctl stop`: STOPPING=1, a clean exit, result success, nothing restarted.
    machine.ok("systemctl stop betwixt");
    let show = machine.show();
    assert_eq!(show["ActiveState"], "inactive", "{show:?}");
    assert_eq!(show["Result"], "success", "{show:?}");
    assert_eq!(show["NRestarts"], "0");
    let journal = machine.journal();
    assert!(journal.contains("Main process exited, code=exited, status=0/SUCCESS"), "{journal}");
    assert_eq!(notifications(&journal, "STOPPING=1"), 1, "{journal}");
    assert!(ask_name(port).is_none() && ask_name(added).is_none(), "still serving after stop");
}

#[test]
fn systemds_watchdog_restarts_a_betwixt_that_stops_pinging() {
    let (machine, port, _backend) = started("systemd-watchdog");
    let first = machine.prop("MainPID");

    // WatchdogSec=10s, pings every 5 s: over a whole period systemd gets pings from the main
    // process and keeps the service.
    std::thread::sleep(Duration::from_secs(11));
    let journal = machine.journal();
    let pings = notifications(&journal, &format!("PID {first} (WATCHDOG=1)"));
    assert!(pings >= 2, "{pings} pings in 11 s:\n{journal}");
    let show = machine.show();
    assert_eq!((show["ActiveState"].as_str(), show["NRestarts"].as_str()), ("active", "0"), "{show:?}");

    // Stopped, betwixt cannot ping: after WatchdogSec systemd aborts it, and Restart=on-failure
    // starts a new one, which serves.
    let stopped = Instant::now();
    machine.ok(&format!("kill -STOP {first}"));
    let journal = machine.journal_until("Failed with result 'watchdog'", 0);
    println!("watchdog fired {:?} after SIGSTOP", stopped.elapsed());
    assert!(journal.contains("Watchdog timeout (limit 10s)!"), "{journal}");
    assert!(stopped.elapsed() >= Duration::from_secs(4), "fired before a missed ping");
    machine.wait_prop("NRestarts", "1", LONG);
    machine.wait_prop("ActiveState", "active", LONG);
    assert_ne!(machine.prop("MainPID"), first);
    assert_eq!(ask_name(port).as_deref(), Some("b1"), "the restarted betwixt does not serve");
}

#[test]
fn an_upgrade_under_systemd_moves_the_main_pid_and_stops_cleanly() {
    let (machine, port, _backend) = started("systemd-upgrade");
    let old = machine.prop("MainPID");

    // The upgrade as docs/systemd.md spells it: systemd follows MAINPID= to the successor,
    // the unit stays active and serves, and the successor pings.
    machine.ok("systemctl kill --kill-whom=main --signal=SIGUSR2 betwixt");
    let mut new = String::new();
    assert!(
        wait_until(LONG, || {
            new = machine.prop("MainPID");
            new != old && new != "0"
        }),
        "MainPID stayed {old}; journal:\n{}",
        machine.journal()
    );
    let journal = machine.journal_until(&format!("PID {new} (READY=1"), 0);
    assert!(journal.contains(&format!("(MAINPID={new})")), "{journal}");
    // The successor is systemd's own child (an orphan it adopted), not an "alien" systemd
    // cannot wait for.
    assert!(!journal.contains("which is not our child"), "{journal}");
    // The old process drains (no connection open here) and exits.
    assert!(
        wait_until(LONG, || !machine.run(&format!("kill -0 {old}")).status.success()),
        "the old process did not exit"
    );
    machine.journal_until(&format!("PID {new} (WATCHDOG=1)"), 0);
    let show = machine.show();
    assert_eq!((show["ActiveState"].as_str(), show["NRestarts"].as_str()), ("active", "0"), "{show:?}");
    assert_eq!(machine.ok("cat /run/betwixt/betwixt.pid").trim(), new, "pidfile");
    assert_eq!(ask_name(port).as_deref(), Some("b1"));

    // `systemctl stop` after the upgrade: SIGTERM, the drain, a clean exit.
    machine.ok("systemctl stop betwixt");
    let show = machine.show();
    let journal = machine.journal();
    assert_eq!(show["Result"], "success", "{show:?}\n{journal}");
    assert_eq!(notifications(&journal, &format!("PID {new} (STOPPING=1")), 1, "{journal}");
    assert!(!journal.contains("with signal SIGKILL"), "killed, not drained:\n{journal}");
}
