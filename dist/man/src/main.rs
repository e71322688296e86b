//! Writes betwixt(1) to stdout, from the command-line definition betwixt itself parses (src/cli/definition.rs, compiled here too), so the page
//! cannot fall behind the options. scripts/deb runs it for the Debian package.

#[path = "../../../src/cli/definition.rs"]
mod definition;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use std::io::Write;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(&page()?)
}

/// The whole page: clap_mangen's sections for the global options, then each subcommand with its
/// own arguments (one page, not one per subcommand), then what the options alone do not tell.
fn page() -> std::io::Result<Vec<u8>> {
    let cli = definition::Cli::command().version(env!("CARGO_PKG_VERSION"));
    let man =
        Man::new(cli.clone()).manual("betwixt manual").source(concat!("betwixt ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut heading = Roff::new();
    heading.control("SH", ["COMMANDS"]);
    out.extend(heading.render().into_bytes());
    for sub in cli.get_subcommands() {
        subcommand(&mut out, sub)?;
    }
    out.extend(notes().render().into_bytes());
    Ok(out)
}

/// One subcommand's arguments under its own heading. clap_mangen renders them as a page's
/// OPTIONS section; everything up to that section's heading is replaced by the subcommand's.
fn subcommand(out: &mut Vec<u8>, sub: &clap::Command) -> std::io::Result<()> {
    let mut heading = Roff::new();
    heading.control("SS", [format!("betwixt {}", sub.get_name()).as_str()]);
    let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
    heading.text([roman(about)]);
    out.extend(heading.render().into_bytes());
    let mut options = Vec::new();
    Man::new(sub.clone()).render_options_section(&mut options)?;
    let options = String::from_utf8(options).expect("clap_mangen writes UTF-8");
    let body = options.split_once(".SH OPTIONS\n").map_or("", |(_, body)| body);
    out.extend(body.as_bytes());
    Ok(())
}

/// Signals, environment, files and pointers to the full documentation.
fn notes() -> Roff {
    let mut roff = Roff::new();
    let mut section =
        |heading: &str, term: fn(&str) -> clap_mangen::roff::Inline, entries: &[(&str, &str)]| {
            roff.control("SH", [heading]);
            for (name, meaning) in entries {
                roff.control("TP", []);
                roff.text([term(name)]);
                roff.text([roman(*meaning)]);
            }
        };
    section("SIGNALS", |s| bold(s), &[
        ("SIGTERM, SIGINT", "stop accepting and let open connections finish ([runtime] shutdown_grace, 30 s by default); a second one stops at once."),
        ("SIGHUP", "reload the configuration as a diff: unchanged servers keep their connections; a configuration refused leaves the running one serving."),
        ("SIGUSR2", "with --upgrade-socket: start the binary now installed as a successor that takes over the listening sockets, while this process drains."),
    ]);
    section("ENVIRONMENT", |s| bold(s), &[
        ("GOBETWEEN", "a JSON array of strings used as the arguments when there are none on the command line, as gobetween reads it."),
        ("BETWIXT_UPGRADE_FROM", "set by a SIGUSR2 upgrade for the successor it starts; overrides --upgrade-from."),
        ("NOTIFY_SOCKET, WATCHDOG_USEC", "set by systemd for a Type=notify service: betwixt reports READY, RELOADING, STOPPING and watchdog pings."),
    ]);
    section(
        "FILES",
        |s| italic(s),
        &[
            (
                "/etc/betwixt/betwixt.toml",
                "the configuration the Debian package installs and its systemd unit runs.",
            ),
            ("/run/betwixt/", "the pidfile and upgrade socket of the systemd service."),
        ],
    );
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman("0 after a clean stop or a valid configuration checked; 1 when the configuration is refused or betwixt cannot start.")]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("systemctl(1). The full documentation is in /usr/share/doc/betwixt/docs/ (docs/ in the source tree): cli.md, configuration.md, reload.md, upgrade.md, systemd.md, install.md.")]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of betwixt and of each subcommand is on the page, under the
    /// spelling roff gives it (`-` is written `\-`).
    #[test]
    fn the_page_lists_every_option_and_subcommand() {
        let page = String::from_utf8(page().unwrap()).unwrap();
        let cli = definition::Cli::command();
        let commands = std::iter::once(&cli).chain(cli.get_subcommands());
        let mut seen = 0;
        for command in commands {
            if command.get_name() != "betwixt" {
                let heading = format!(".SS \"betwixt {}\"", command.get_name());
                assert!(page.contains(&heading), "no {heading} in\n{page}");
            }
            for arg in command.get_arguments() {
                let spellings = arg
                    .get_long()
                    .map(|long| format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-")))
                    .into_iter()
                    .chain(arg.get_short().map(|short| format!("\\fB\\-{short}\\fR")))
                    .chain(
                        arg.is_positional()
                            .then(|| format!("<\\fI{}\\fR>", arg.get_value_names().unwrap()[0])),
                    );
                for spelling in spellings {
                    assert!(page.contains(&spelling), "no {spelling} in\n{page}");
                    seen += 1;
                }
            }
        }
        // -c -f -p -e -v (long and short), --shards, --strict, --upgrade-*, from-consul's -k -s.
        assert!(seen >= 20, "only {seen} spellings checked");
    }
}
