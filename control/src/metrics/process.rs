//! The standard `process_*` series, as Prometheus' Go client exports them by default (and so
//! gobetween does): CPU time, memory, file descriptors, start time and the network namespace's
//! byte counts, read from `/proc` at scrape time. A value that cannot be read is left out, as
//! the Go client leaves it out, rather than failing the scrape.

use super::exposition::Exposition;
use std::sync::OnceLock;

/// `/proc/self/stat` fields after the command name (which may itself hold spaces or `)`).
struct Stat {
    cpu_ticks: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields are numbered from 1 in proc(5); field 3 (state) is the first after the name.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
}

/// The soft limit; unlimited reads as 2^64-1, as Go's client reports it.
fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    (unsafe { libc::getrlimit(resource, &mut limit) } == 0).then_some(limit.rlim_cur)
}

fn open_fds() -> Option<u64> {
    // Since Linux 6.2 the directory's size is the number of open descriptors; older kernels
    // report 0 and the entries are counted.
    let size = std::fs::metadata("/proc/self/fd").ok()?.len();
    if size > 0 {
        return Some(size);
    }
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Seconds since the epoch when the process started: boot time plus the start tick. Fixed for
/// the life of the process, so read once.
fn start_time(stat: &Stat, ticks_per_second: u64) -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let proc_stat = std::fs::read_to_string("/proc/stat").ok()?;
        let boot: u64 = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        Some(boot as f64 + stat.start_ticks as f64 / ticks_per_second as f64)
    })
}

/// `InOctets` and `OutOctets` of the `IpExt:` lines in `/proc/self/net/netstat`: bytes the
/// process's network namespace received and sent, which is what Go's client reports.
fn network_bytes() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("IpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let column = |name: &str| -> Option<u64> {
        let at = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(at)?.parse().ok()
    };
    Some((column("InOctets")?, column("OutOctets")?))
}

pub fn write(e: &mut Exposition) {
    let ticks_per_second = sysconf(libc::_SC_CLK_TCK).unwrap_or(100);
    if let Some(stat) = read_stat() {
        let cpu = stat.cpu_ticks as f64 / ticks_per_second as f64;
        e.counters(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            [(Vec::new(), cpu)],
        );
        e.gauges(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            [(Vec::new(), stat.virtual_bytes)],
        );
        let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        e.gauges(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            [(Vec::new(), stat.resident_pages * page)],
        );
        if let Some(start) = start_time(&stat, ticks_per_second) {
            e.gauges(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                [(Vec::new(), start)],
            );
        }
    }
    if let Some(fds) = open_fds() {
        e.gauges("process_open_fds", "Number of open file descriptors.", [(Vec::new(), fds)]);
    }
    if let Some(max) = soft_limit(libc::RLIMIT_NOFILE) {
        e.gauges("process_max_fds", "Maximum number of open file descriptors.", [(Vec::new(), max)]);
    }
    if let Some(max) = soft_limit(libc::RLIMIT_AS) {
        e.gauges(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            [(Vec::new(), max)],
        );
    }
    if let Some((received, sent)) = network_bytes() {
        e.counters(
            "process_network_receive_bytes",
            "Number of bytes received by the process over the network.",
            [(Vec::new(), received)],
        );
        e.counters(
            "process_network_transmit_bytes",
            "Number of bytes sent by the process over the network.",
            [(Vec::new(), sent)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::Format;

    #[test]
    fn own_process_reads_sane_values() {
        let stat = read_stat().expect("/proc/self/stat");
        assert!(stat.virtual_bytes > 0 && stat.resident_pages > 0);
        let start = start_time(&stat, sysconf(libc::_SC_CLK_TCK).unwrap()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 24.0 * 3600.0, "start {start}, now {now}");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let fds = open_fds().unwrap();
        assert!(fds >= 4, "stdin, stdout, stderr and the open file: {fds}");
        drop(file);
        assert!(soft_limit(libc::RLIMIT_NOFILE).unwrap() >= fds);
        assert!(network_bytes().is_some());

        let mut e = Exposition::new(Format::Text);
        write(&mut e);
        let text = e.finish();
        for name in [
            "process_cpu_seconds_total",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
            "process_network_receive_bytes_total",
            "process_network_transmit_bytes_total",
        ] {
            assert!(text.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing:\n{text}");
        }
    }
}
