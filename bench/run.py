#!/usr/bin/env python3
"""Side-by-side benchmark: direct, betwixt, HAProxy and nginx on the same core, same backend,
same load tools. Called by scripts/bench once everything is installed and built.

Layout of the machine during a run: every proxy under test is pinned to PROXY_CPU, the load tools
and the backends (nginx http, iperf3 server, betwixt-bench udp-echo and stream-backend) to
LOAD_CPU. Targets run one after the other inside each round; rounds repeat the whole sequence,
and the report shows the median of the rounds.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chart

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "bench" / "conf"
# BETWIXT_BIN: another build of betwixt, for A/B runs of two builds in the same window.
BETWIXT = Path(os.environ.get("BETWIXT_BIN", ROOT / "target" / "release" / "betwixt"))
TOOL = ROOT / "target" / "release" / "betwixt-bench"

LOAD_CPU = "0"
PROXY_CPU = "1"
BACKEND_HTTP = 18080
BACKEND_BULK = 18201
BACKEND_UDP = 18202
BACKEND_STREAM = 18203  # betwixt-bench stream-backend: downloads, uploads, echo (TLS scenarios)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Port pair (http, bulk) each target listens on; direct goes straight to the backends.
TARGETS = {
    "direct": (BACKEND_HTTP, BACKEND_BULK),
    "betwixt": (18100, 18101),
    "haproxy": (18110, 18111),
    "nginx": (18120, 18121),
}

# TLS scenario ports of each target: (TLS terminated to the http backend, TLS terminated to the
# stream backend for bulk, SNI passthrough to the echo backend, plain tcp to the same backend).
# direct has no TLS listener (the backends are plain); its SNI pair is the echo backend itself.
TLS_TARGETS = {
    "direct": (None, None, BACKEND_STREAM, BACKEND_STREAM),
    "betwixt": (18104, 18105, 18106, 18107),
    "haproxy": (18114, 18115, 18116, 18117),
    "nginx": (18124, 18125, 18126, 18127),
}
# Every TLS figure uses one certificate and name: ECDSA P-256, self-signed, for bench.test.
TLS_NAME = "bench.test"
# Bulk over TLS: this many connections, each moving this many bytes (1 GiB in all) per direction.
TLS_BULK_CONNS = 4
TLS_BULK_BYTES = 256 * 2**20

# UDP port pair (per-query sessions, long sessions) of each target; HAProxy has no UDP proxy.
# nginx serves both on one port: `proxy_responses 1` ends its session once every datagram has
# had its reply, which covers both. betwixt uses gobetween's keys: `max_responses = 1` on the
# first, a client idle timeout on the second.
UDP_TARGETS = {
    "direct": (BACKEND_UDP, BACKEND_UDP),
    "betwixt": (18102, 18103),
    "nginx": (18122, 18122),
}


def with_access_log(conf, run_dir):
    """`[access_log]` on, writing to a file in the run directory: the log's cost."""
    return conf + f'\n[access_log]\nenabled = true\noutput = "{run_dir}/access.log"\n'


def with_kernel_forwarding(conf, run_dir):
    """Each plain TCP connection handed to the kernel (`[runtime] forwarding = "kernel"`)."""
    return conf.replace("[runtime]\n", '[runtime]\nforwarding = "kernel"\n', 1)


def with_half_close_off(conf, run_dir):
    """`half_close = false` on the tcp and tls servers: the first end of stream of either side
    closes the connection, as nginx does by default (`proxy_half_close off`)."""
    for protocol in ('protocol = "tcp"\n', 'protocol = "tls"\n'):
        conf = conf.replace(protocol, protocol + "half_close = false\n")
    return conf


# betwixt and its variants: the same binary with one edit to the benchmark's configuration.
# Targets run one at a time, so each variant takes betwixt's ports.
BETWIXT_VARIANTS = {
    "betwixt": None,
    "betwixt-accesslog": with_access_log,
    "betwixt-kernel": with_kernel_forwarding,
    "betwixt-close": with_half_close_off,
}
for variant in BETWIXT_VARIANTS:
    TARGETS[variant] = TARGETS["betwixt"]
    TLS_TARGETS[variant] = TLS_TARGETS["betwixt"]
    UDP_TARGETS[variant] = UDP_TARGETS["betwixt"]

# name: (datagram bytes, clients, datagrams in flight per client, which port of the pair)
UDP_CASES = {
    "udp_dns_many": (64, 256, 1, 0),
    "udp_small_one": (64, 1, 32, 1),
    "udp_big_many": (1400, 64, 8, 1),
    "udp_big_one": (1400, 1, 32, 1),
}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def render(template, run_dir, **ports):
    text = (CONF / template).read_text()
    fixed = {"run": run_dir, "backend_http": BACKEND_HTTP, "backend_bulk": BACKEND_BULK, "backend_udp": BACKEND_UDP,
             "backend_stream": BACKEND_STREAM}
    for key, value in {**fixed, **ports}.items():
        text = text.replace("{" + key + "}", str(value))
    path = Path(run_dir) / template
    path.write_text(text)
    return path


PEERS = ("nginx", "haproxy")


def builds_and_peers(parser, specs):
    """[name, target] for each `NAME=BINARY` (a betwixt build) or peer name among `specs`, for the
    tools that measure builds and peers alike; a bad one is a usage error of `parser`."""
    targets = [spec.split("=", 1) if "=" in spec else [spec, spec] for spec in specs]
    if any(name == target and target not in PEERS for name, target in targets):
        parser.error("give builds as NAME=BINARY, or name a peer: " + ", ".join(PEERS))
    return targets


def pinned(cpu, argv, **kwargs):
    return subprocess.Popen(["taskset", "-c", cpu, *map(str, argv)], **kwargs)


def listening(port):
    """True when a TCP socket listens on `port` (read from /proc, so no connection disturbs it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), from the kernel's accounting."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def idle_clocks():
    """(now, {"cpu": idle seconds of all CPUs, "cpu0": of CPU 0, ...}) from /proc/stat. Its idle and
    iowait fields come from the kernel's precise no-tick idle clocks; its busy fields are tick
    samples, which miss much of a load that sleeps between short bursts, so busy time is taken as
    elapsed time minus idle, never summed from them."""
    idle = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        idle[name] = (int(fields[3]) + int(fields[4])) / CLK_TCK
    return time.clock_gettime(time.CLOCK_BOOTTIME), idle


def machine_busy():
    """CPU seconds the whole machine has been busy (every CPU, every process, softirq and kernel
    threads included): CPUs × elapsed time minus idle."""
    now, idle = idle_clocks()
    return os.cpu_count() * now - idle["cpu"]


def busy_seconds(before, after, cpu):
    """Seconds CPU `cpu` was busy between two `idle_clocks()` readings, and the time between them."""
    elapsed = after[0] - before[0]
    return elapsed - (after[1][f"cpu{cpu}"] - before[1][f"cpu{cpu}"]), elapsed


def softirq_threads(cpu):
    """The ksoftirqd thread of `cpu`, as a list of pids (empty where there is none)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == f"ksoftirqd/{cpu}":
                    return [int(entry.name)]
            except OSError:
                pass
    return []


def rss_kib(pids):
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Proxy:
    """A running target. `pids` are the processes doing the forwarding (for nginx the worker)."""

    def __init__(self, name, run_dir, betwixt=None):
        """`betwixt`: the binary of the betwixt targets (default BETWIXT)."""
        self.name = name
        self.http, self.bulk = TARGETS[name]
        self.udp = UDP_TARGETS.get(name)
        self.proc = None
        self.pids = []
        self.tls, self.tls_bulk, self.sni, self.sni_plain = TLS_TARGETS[name]
        ports = {"http": self.http, "bulk": self.bulk, "udp_dns": UDP_TARGETS["betwixt"][0],
                 "udp_stream": UDP_TARGETS["betwixt"][1], "udp_nginx": UDP_TARGETS["nginx"][0],
                 "tls": self.tls, "tls_bulk": self.tls_bulk, "sni": self.sni, "sni_plain": self.sni_plain}
        out = open(Path(run_dir) / f"{name}.out", "ab")
        if name in BETWIXT_VARIANTS:
            conf = render("betwixt.toml", run_dir, **ports)
            if edit := BETWIXT_VARIANTS[name]:
                conf.write_text(edit(conf.read_text(), run_dir))
            self.proc = pinned(PROXY_CPU, [betwixt or BETWIXT, "--shards", "1", "-c", conf], stdout=out, stderr=out)
        elif name == "haproxy":
            conf = render("haproxy.cfg", run_dir, **ports)
            self.proc = pinned(PROXY_CPU, ["haproxy", "-db", "-f", conf], stdout=out, stderr=out)
        elif name == "nginx":
            conf = render("nginx-stream.conf", run_dir, **ports)
            self.proc = pinned(PROXY_CPU, ["nginx", "-p", run_dir, "-c", conf], stdout=out, stderr=out)
        if self.proc is not None:
            for port in (self.http, self.bulk, self.tls, self.tls_bulk, self.sni, self.sni_plain):
                wait_port(port, self.proc)
            self.pids = children(self.proc.pid) if name == "nginx" else [self.proc.pid]

    def cpu(self):
        # The proxy's own threads, and the softirq work the kernel deferred from them to the
        # proxy core's ksoftirqd: a proxy that sends in batches leaves more of the receivers'
        # protocol work there, which its own utime + stime would not show.
        return cpu_seconds(self.pids + softirq_threads(PROXY_CPU)) if self.pids else 0.0

    def stop(self):
        stop(self.proc)


def wrk(port, seconds, close, conns=64):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(["taskset", "-c", LOAD_CPU, *argv], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx or (errors and not close):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return requests, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def iperf(port, seconds, streams):
    argv = ["iperf3", "-c", "127.0.0.1", "-p", port, "-t", seconds, "-P", streams, "-J"]
    out = subprocess.run(["taskset", "-c", LOAD_CPU, *map(str, argv)], capture_output=True, text=True, check=True)
    end = json.loads(out.stdout)["end"]["sum_received"]
    return end["bytes"], end["bits_per_second"] / 1e9


def latency(port, seconds, rate):
    argv = [TOOL, "latency", f"127.0.0.1:{port}", "--rate", rate, "--seconds", seconds, "--conns", 4]
    # BENCH_SLOW_OVER=US: the exchanges slower than US µs, with the time they left, go to stderr.
    slow_over = os.environ.get("BENCH_SLOW_OVER")
    if slow_over:
        argv += ["--slow-over", slow_over]
    out = subprocess.run(["taskset", "-c", LOAD_CPU, *map(str, argv)], capture_output=True, text=True, check=True)
    if slow_over:
        sys.stderr.write(out.stderr)
    return json.loads(out.stdout)


def load(test, port, seconds, rate, conns=64):
    """One of the tests that `pair.py`, `split.py` and `instructions.py` share, against `port`:
    `paced` (`latency` at `rate` requests/s), `requests` or `conns` (`wrk` on `conns`
    connections, keep-alive or `Connection: close`); how many requests or connections it made."""
    if test == "paced":
        return latency(port, seconds, rate)["count"]
    return wrk(port, seconds, close=test == "conns", conns=conns)[0]


def idle(proxy, conns):
    """RSS of the proxy with `conns` idle proxied connections, and the growth per connection."""
    before = rss_kib(proxy.pids)
    tool = pinned(LOAD_CPU, [TOOL, "idle", f"127.0.0.1:{proxy.http}", "--conns", conns, "--hold", 120],
                  stdout=subprocess.PIPE, text=True)
    try:
        line = tool.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"idle tool failed (exit {tool.wait()})")
        time.sleep(1.0)
        during = rss_kib(proxy.pids)
    finally:
        stop(tool)
    return during, (during - before) / conns


def udp_load(port, seconds, size, clients, window):
    argv = [TOOL, "udp", f"127.0.0.1:{port}", "--size", size, "--clients", clients, "--window", window,
            "--seconds", seconds]
    out = subprocess.run(["taskset", "-c", LOAD_CPU, *map(str, argv)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["wrong"]:
        raise RuntimeError(f"UDP replies reached the wrong client: {result}")
    return result


def measure_udp(proxy, args):
    """Datagrams/s (request and reply counted once), loss, and proxy CPU per datagram."""
    r = {}
    for case, (size, clients, window, which) in UDP_CASES.items():
        cpu0 = proxy.cpu()
        result = udp_load(proxy.udp[which], args.seconds, size, clients, window)
        r[f"{case}_per_s"] = result["datagrams_per_s"]
        r[f"{case}_loss_pct"] = 100.0 * result["lost"] / max(result["sent"], 1)
        r[f"{case}_cpu_us"] = (proxy.cpu() - cpu0) / max(result["received"], 1) * 1e6 if proxy.pids else None
    return r


def tool_json(argv):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, TOOL, *map(str, argv)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"betwixt-bench {argv[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def closed_loop(what, port, args, **options):
    """A `betwixt-bench` closed loop (handshakes or hellos); refuses a run with more than 0.1% errors."""
    argv = [what, f"127.0.0.1:{port}", "--seconds", args.seconds, "--name", TLS_NAME, "--ca", args.ca]
    for key, value in options.items():
        argv += [f"--{key}", value]
    result = tool_json(argv)
    done = sum(v for k, v in result.items() if k in ("full", "resumed", "conns"))
    if result["errors"] > done / 1000:
        raise RuntimeError(f"{what} on port {port}: {result['errors']} errors, first: {result['first_error']}")
    return result, done


def measure_tls(proxy, args):
    """TLS handshakes (full, resumed), bulk over TLS, SNI passthrough against plain tcp."""
    r = {}
    conns = args.tls_conns
    if proxy.tls is not None:
        for kind, resume in (("full", 0), ("resumed", 1)):
            cpu0 = proxy.cpu()
            result, done = closed_loop("handshakes", proxy.tls, args, conns=conns, resume=resume)
            r[f"tls_{kind}_per_s"] = result["per_s"]
            r[f"tls_{kind}_cpu_us"] = (proxy.cpu() - cpu0) / done * 1e6
            if resume:
                # The proof that the peer resumes: rustls' own account of each handshake.
                r["tls_resumed_pct"] = 100.0 * result["resumed"] / max(done, 1)
            elif result["resumed"]:
                raise RuntimeError(f"{result['resumed']} handshakes resumed in the full-handshake test")
        for direction in ("down", "up"):
            cpu0 = proxy.cpu()
            result = tool_json(["tls-bulk", f"127.0.0.1:{proxy.tls_bulk}", "--conns", TLS_BULK_CONNS,
                                "--bytes", TLS_BULK_BYTES, "--direction", direction, "--name", TLS_NAME,
                                "--ca", args.ca])
            r[f"tls_{direction}_gbit"] = result["gbit_per_s"]
            r[f"tls_{direction}_cpu_s_per_gib"] = (proxy.cpu() - cpu0) / (result["bytes"] / 2**30)
    for key, port in (("sni", proxy.sni), ("sni_plain", proxy.sni_plain)):
        cpu0 = proxy.cpu()
        result, done = closed_loop("hello", port, args, conns=conns)
        r[f"{key}_per_s"] = result["per_s"]
        r[f"{key}_cpu_us"] = (proxy.cpu() - cpu0) / done * 1e6 if proxy.pids else None
    r["sni_added_cpu_us"] = r["sni_cpu_us"] - r["sni_plain_cpu_us"] if proxy.pids else None
    if not proxy.pids:
        for key in list(r):
            if "cpu" in key:
                r[key] = None
    return r


def measure(proxy, args):
    """One round of every figure for one target."""
    r = {}
    if "udp" in args.scenarios and proxy.udp:
        r.update(measure_udp(proxy, args))
    if "tls" in args.scenarios:
        r.update(measure_tls(proxy, args))
    if "tcp" not in args.scenarios:
        return r
    d = args.seconds
    tests = set(args.tcp_tests.split(","))
    if "conns" in tests:
        cpu0 = proxy.cpu()
        n, r["conns_per_s"] = wrk(proxy.http, d, close=True)
        r["cpu_us_per_conn"] = (proxy.cpu() - cpu0) / n * 1e6
    if "requests" in tests:
        cpu0 = proxy.cpu()
        n, r["req_per_s"] = wrk(proxy.http, d, close=False)
        r["cpu_us_per_req"] = (proxy.cpu() - cpu0) / n * 1e6
    if "bulk" in tests:
        cpu0 = proxy.cpu()
        moved = 0
        for streams in (1, 8):
            before = idle_clocks()
            moved_now, r[f"bulk{streams}_gbit"] = iperf(proxy.bulk, d, streams)
            span = (before, idle_clocks())
            moved += moved_now
            # Where the limit is: each CPU's busy share, and what the load side (both iperf3 ends
            # and the kernel work done in their name) spends per GiB.
            load, elapsed = busy_seconds(*span, LOAD_CPU)
            r[f"bulk{streams}_load_busy_pct"] = load / elapsed * 100
            r[f"bulk{streams}_proxy_busy_pct"] = busy_seconds(*span, PROXY_CPU)[0] / elapsed * 100
            r[f"bulk{streams}_load_s_per_gib"] = load / (moved_now / 2**30)
        r["cpu_s_per_gib"] = (proxy.cpu() - cpu0) / (moved / 2**30)
    if "latency" in tests:
        cpu0, all0 = proxy.cpu(), machine_busy()
        lat = latency(proxy.http, d, args.rate)
        # At a moderate rate the proxy sleeps between requests: this shows the cost of waking up.
        # The whole machine's CPU too: the load keeps both CPUs busy only in the closed-loop
        # tests, so only here does it measure cost (and it counts what a proxy leaves to the
        # kernel on other CPUs, as kernel forwarding does).
        r["cpu_us_per_req_paced"] = (proxy.cpu() - cpu0) / (args.rate * d) * 1e6
        r["machine_us_per_req_paced"] = (machine_busy() - all0) / (args.rate * d) * 1e6
        r.update({"p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "p999_us": lat["p999_us"]})
    if "idle" in tests and proxy.pids:
        r["rss_idle_mib"], per_conn = idle(proxy, args.idle_conns)
        r["rss_idle_mib"] /= 1024
        r["kib_per_idle_conn"] = per_conn
    if not proxy.pids:
        for key in ("cpu_us_per_conn", "cpu_us_per_req", "cpu_us_per_req_paced", "cpu_s_per_gib"):
            if key in r:
                r[key] = None
    return r


def certificate(run_dir):
    """The one certificate every TLS listener serves: ECDSA P-256 for TLS_NAME, issued by a CA
    made for the run (ECDSA P-256 too), which the load client verifies it against. HAProxy reads
    certificate and key from one file."""
    d = Path(run_dir)
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "leaf.ext").write_text(f"subjectAltName=DNS:{TLS_NAME}\nbasicConstraints=CA:FALSE\n")
    for argv in (
        ["req", "-x509", *p256, "-keyout", d / "ca-key.pem", "-out", d / "ca.pem", "-days", "30",
         "-subj", "/CN=betwixt bench CA"],
        ["req", *p256, "-keyout", d / "key.pem", "-out", d / "leaf.csr", "-subj", f"/CN={TLS_NAME}"],
        ["x509", "-req", "-in", d / "leaf.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca-key.pem",
         "-CAcreateserial", "-out", d / "cert.pem", "-days", "30", "-extfile", d / "leaf.ext"],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    (d / "haproxy.pem").write_text((d / "cert.pem").read_text() + (d / "key.pem").read_text())
    return d / "ca.pem"


def versions():
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    rev = first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "machine": f"{cpu}, {os.cpu_count()} CPUs, {int(mem) // 2**20} GiB RAM, Linux {platform.release()}",
        "betwixt": f"{first_line([BETWIXT, '--version'])} (git {rev})",
        "haproxy": first_line(["haproxy", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "iperf3": first_line(["iperf3", "-v"]),
        "openssl": first_line(["openssl", "version"]),
        "rustc": first_line(["rustc", "-V"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each load test")
    parser.add_argument("--rate", type=int, default=5000, help="requests/s of the latency test")
    parser.add_argument("--idle-conns", type=int, default=8000)
    parser.add_argument("--targets", default="direct,betwixt,haproxy,nginx")
    parser.add_argument("--scenarios", default="tcp,udp,tls", help="comma-separated: tcp (connections, "
                        "requests, bulk, latency, idle), udp (datagrams through a UDP proxy; HAProxy has none), "
                        "tls (handshakes full and resumed, bulk over TLS, SNI passthrough against plain tcp)")
    parser.add_argument("--tcp-tests", default="conns,requests,bulk,latency,idle",
                        help="which tcp tests to run (a subset for a focused A/B run)")
    parser.add_argument("--tls-conns", type=int, default=32, help="client threads of the handshake and SNI loops")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--command", default="scripts/bench", help="how this run was started (for the report)")
    args = parser.parse_args()
    targets = args.targets.split(",")
    if "tcp" not in args.scenarios and "tls" not in args.scenarios:
        targets = [t for t in targets if t in UDP_TARGETS]

    run_dir = tempfile.mkdtemp(prefix="betwixt-bench-")
    log(f"work files in {run_dir}")
    backend = iperf_server = stream_backend = None
    args.ca = str(certificate(run_dir))
    if "tcp" in args.scenarios or "tls" in args.scenarios:
        backend = pinned(LOAD_CPU, ["nginx", "-p", run_dir, "-c", render("backend-nginx.conf", run_dir)])
        iperf_server = pinned(LOAD_CPU, ["iperf3", "-s", "-B", "127.0.0.1", "-p", BACKEND_BULK],
                              stdout=subprocess.DEVNULL)
    udp_echo = pinned(LOAD_CPU, [TOOL, "udp-echo", f"127.0.0.1:{BACKEND_UDP}"])
    stream_backend = pinned(LOAD_CPU, [TOOL, "stream-backend", f"127.0.0.1:{BACKEND_STREAM}", "--threads",
                                       args.tls_conns + 2 * TLS_BULK_CONNS])
    rounds = {t: [] for t in targets}
    started = time.time()
    try:
        if backend is not None:
            wait_port(BACKEND_HTTP, backend)
            wait_port(BACKEND_BULK, iperf_server)
        wait_port(BACKEND_STREAM, stream_backend)
        for i in range(args.rounds):
            for name in targets:
                log(f"round {i + 1}/{args.rounds}: {name}")
                proxy = Proxy(name, run_dir)
                try:
                    result = measure(proxy, args)
                finally:
                    proxy.stop()
                log("  " + ", ".join(f"{k}={v:.4g}" for k, v in result.items() if v is not None))
                rounds[name].append(result)
                time.sleep(1)  # let TIME_WAIT sockets and closing connections settle
    finally:
        stop(udp_echo)
        stop(stream_backend)
        stop(iperf_server)
        stop(backend)

    medians = {t: {k: (statistics.median(v) if None not in (v := [r[k] for r in rs]) else None)
                   for k in rs[0]} for t, rs in rounds.items() if rs and rs[0]}
    info = versions()
    info["elapsed"] = f"{time.time() - started:.0f} s"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"info": info, "args": vars(args), "rounds": rounds,
                                                  "medians": medians}, indent=2) + "\n")
    (out / "results.md").write_text(chart.markdown(medians, info, args))
    (out / "chart.svg").write_text(chart.svg(medians))
    log(f"results in {out}/results.md and chart.svg")
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
