//! The Debian package (scripts/deb): built from the binary these tests run, then installed,
//! run, upgraded, removed and purged with the real dpkg and maintainer scripts in a throwaway
//! root, checked against its man page, and by lintian.
//!
//! The throwaway root is an overlay of this machine's root file system whose changes go to a
//! temporary directory, entered with chroot in mount, network and pid namespaces of its own: the
//! package sees this machine's dpkg database and tools (adduser, deb-systemd-helper) but changes
//! nothing outside, its default ports are free whatever else runs here, and no systemd runs in it,
//! which the maintainer scripts must cope with. Needs root, dpkg, unshare and chroot.

mod common;

use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The package, built once for every test here by scripts/deb from the already built debug
/// binary (`--no-build`: a release build would take minutes; `--fast`: lighter compression;
/// `--no-dbgsym`: no debug-symbol package, which the debug build would make large),
/// into the tests' directory under target/ (target/debian/ keeps what scripts/deb built there).
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging/");
        let out = Command::new(Path::new(ROOT).join("scripts/deb"))
            .args(["--profile", "dev", "--no-build", "--fast", "--no-dbgsym", "--output"])
            .arg(&output)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/deb failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // cargo deb prints the package's path last.
        let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(deb.extension().is_some_and(|e| e == "deb") && deb.is_file(), "no package in:\n{stdout}");
        deb
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Mounts the overlay ($3 lower layer's changes in $1, overlay work directory $2, mounted at $3),
/// the kernel file systems and loopback, then runs $4 with bash chrooted there.
const ENTER: &str = r#"
set -e
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$1,workdir=$2" "$3"
mount -t proc proc "$3/proc"
mount --rbind /dev "$3/dev"
mount --rbind /sys "$3/sys"
mount -t tmpfs tmpfs "$3/run"
ip link set lo up
exec chroot "$3" /bin/bash -c "$4"
"#;

/// A throwaway root: this machine's root file system, with every change kept in a temporary
/// directory, removed on drop.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = TempDir::new("packaging");
        for sub in ["upper/root", "work", "merged"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        Root { dir }
    }

    /// `path` in the root as changed so far (files the package installed or edited; what it
    /// removed shows as still there: ask `exists` for that).
    fn changed(&self, path: &str) -> PathBuf {
        self.dir.0.join("upper").join(path.trim_start_matches('/'))
    }

    /// Runs `script` with bash in the root, each time in fresh namespaces: processes it starts end
    /// with it (pid namespace), mounts go with it, the changes to files stay.
    fn run(&self, script: &str) -> Output {
        let dir = |sub: &str| self.dir.0.join(sub).into_os_string();
        Command::new("unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", ENTER, "sh"])
            .args([dir("upper"), dir("work"), dir("merged")])
            .arg(script)
            .output()
            .unwrap()
    }

    /// Runs `script`, which must succeed; returns its output.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(out.status.success(), "`{script}` failed in the package root:\n{}", text(&out));
        text(&out)
    }

    fn exists(&self, path: &str) -> bool {
        self.run(&format!("test -e '{path}' || test -L '{path}'")).status.success()
    }
}

/// The unit's command line, continuation lines joined.
fn exec_start(unit: &str) -> String {
    let joined = unit.replace("\\\n", " ");
    let line = joined.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("no ExecStart=");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_package_installs_serves_upgrades_and_purges_without_systemd() {
    let root = Root::new();
    std::fs::copy(package(), root.changed("/root/betwixt.deb")).unwrap();
    let installed = root.ok("dpkg -i /root/betwixt.deb");
    println!("{installed}");

    // What is where: the binary, the configuration as a conffile, the unit running the packaged
    // binary (otherwise dist/betwixt.service as it is), betwixt(1), the copyright.
    let unit = std::fs::read_to_string(root.changed("/usr/lib/systemd/system/betwixt.service")).unwrap();
    let dist_unit = std::fs::read_to_string(Path::new(ROOT).join("dist/betwixt.service")).unwrap();
    assert_eq!(unit, dist_unit.replace("ExecStart=/usr/local/bin/betwixt ", "ExecStart=/usr/bin/betwixt "));
    let config = std::fs::read_to_string(root.changed("/etc/betwixt/betwixt.toml")).unwrap();
    assert_eq!(config, std::fs::read_to_string(Path::new(ROOT).join("dist/betwixt.toml")).unwrap());
    let conffiles = root.ok("dpkg-query -W -f '${Conffiles}' betwixt");
    assert!(conffiles.contains("/etc/betwixt/betwixt.toml"), "{conffiles}");
    for path in ["/usr/bin/betwixt", "/usr/share/man/man1/betwixt.1.gz", "/usr/share/doc/betwixt/copyright"] {
        assert!(root.changed(path).is_file(), "{path} not installed");
    }
    // The unit's user exists, a system user without a login; the service is enabled.
    let user = root.ok("getent passwd betwixt");
    assert!(user.trim_end().ends_with(":/nonexistent:/usr/sbin/nologin"), "{user}");
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "not a system user: {user}");
    assert!(root.exists("/etc/systemd/system/multi-user.target.wants/betwixt.service"), "not enabled");

    // The installed default configuration passes `betwixt check`, and the unit's own command
    // line, run as the unit's user, serves the API on loopback.
    let command = exec_start(&unit);
    let serve = format!(
        r#"
        mkdir -p /run/betwixt && chown betwixt:betwixt /run/betwixt
        as_betwixt() {{ setpriv --reuid=betwixt --regid=betwixt --init-groups "$@"; }}
        as_betwixt betwixt check /etc/betwixt/betwixt.toml >/dev/null && echo "check: ok"
        setpriv --reuid=betwixt --regid=betwixt --init-groups {command} &
        pid=$!
        for _ in $(seq 400); do
            reply=$( (exec 3<>/dev/tcp/127.0.0.1/8888 && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null ) && break
            sleep 0.05
        done
        echo "reply: $reply"
        echo "pidfile: $(cat /run/betwixt/betwixt.pid)"
        echo "pid: $pid"
        kill -TERM $pid
        wait $pid
        echo "exit: $?"
        "#
    );
    let served = root.ok(&serve);
    assert!(served.contains("check: ok"), "{served}");
    assert!(served.contains(" 200 OK") && served.trim_end().contains("\nOK"), "{served}");
    let field = |name: &str| served.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
    assert_eq!(field("pidfile: "), field("pid: "), "{served}");
    assert_eq!(field("exit: ").as_deref(), Some("0"), "{served}");

    // An upgrade (the same version again: the maintainer scripts see one) keeps an edited
    // configuration without asking.
    root.ok("echo '# edited' >> /etc/betwixt/betwixt.toml");
    root.ok("dpkg -i /root/betwixt.deb </dev/null");
    let config = std::fs::read_to_string(root.changed("/etc/betwixt/betwixt.toml")).unwrap();
    assert!(config.ends_with("# edited\n"), "the edited configuration was replaced");

    // Removing leaves the configuration; purging takes it, the enablement too; the user stays.
    root.ok("dpkg -r betwixt");
    assert!(!root.exists("/usr/bin/betwixt") && !root.exists("/usr/lib/systemd/system/betwixt.service"));
    assert!(root.exists("/etc/betwixt/betwixt.toml"));
    root.ok("dpkg -P betwixt");
    for gone in [
        "/etc/betwixt",
        "/etc/systemd/system/multi-user.target.wants/betwixt.service",
        "/etc/systemd/system/betwixt.service",
    ] {
        assert!(!root.exists(gone), "{gone} left after purge");
    }
    root.ok("getent passwd betwixt");
}

/// Every option the packaged binary's help lists, for itself and each subcommand, is in the
/// packaged betwixt(1).
#[test]
fn the_packaged_man_page_lists_every_option_of_the_packaged_binary() {
    let dir = TempDir::new("packaging-man");
    let out = Command::new("dpkg-deb").arg("-x").arg(package()).arg(&dir.0).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let page =
        Command::new("gzip").arg("-dc").arg(dir.0.join("usr/share/man/man1/betwixt.1.gz")).output().unwrap();
    assert!(page.status.success());
    // roff writes `-` as `\-`.
    let page = String::from_utf8(page.stdout).unwrap().replace("\\-", "-");
    let binary = dir.0.join("usr/bin/betwixt");
    let help = |args: &[&str]| text(&Command::new(&binary).args(args).output().unwrap());
    let main_help = help(&["--help"]);
    let subcommands: Vec<String> = main_help
        .split("Commands:")
        .nth(1)
        .expect("no subcommands in the help")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    assert!(subcommands.len() >= 4, "{main_help}");
    let mut checked = 0;
    for (heading, help) in std::iter::once(("betwixt".to_string(), main_help.clone()))
        .chain(subcommands.iter().map(|sub| (format!("betwixt {sub}"), help(&[sub, "--help"]))))
    {
        assert!(page.contains(&format!("\"{heading}\"")) || heading == "betwixt", "no section {heading}");
        // Every `-x` and `--long` spelled at the start of an option line of the help.
        for line in help.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
            // An optional value follows the name without a space: `--version[=<BOOL>]`.
            let options = line.split([' ', ',']).map(|w| w.split("[=").next().unwrap_or(w));
            for option in options.filter(|w| w.starts_with('-') && w.len() > 1) {
                assert!(
                    page.contains(&format!("\\fB{option}\\fR")),
                    "{option} ({heading}) missing from betwixt(1)"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} options found in the help");
}

/// lintian, Debian's package checker, finds no error in the package.
#[test]
fn lintian_finds_no_error_in_the_package() {
    let out = Command::new("lintian").arg("--tag-display-limit=0").arg(package()).output().unwrap();
    let report = text(&out);
    println!("{report}");
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty() && out.status.code() != Some(2), "lintian:\n{report}");
}

/// dist/debian/changelog's latest entry is this version, as the package's (cargo-deb's revision
/// 1): a version bump without a changelog entry fails here, not in an upgrade.
#[test]
fn the_debian_changelog_starts_with_this_version() {
    let changelog = std::fs::read_to_string(Path::new(ROOT).join("dist/debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    let expected = format!("betwixt ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(first.starts_with(&expected), "dist/debian/changelog starts `{first}`, not `{expected}`");
}
