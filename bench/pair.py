#!/usr/bin/env python3
"""Paired comparison of betwixt builds: is build B cheaper than build A, by how much, and how sure?

On this kind of machine, CPU per connection or per request moves by ±10% between runs and hours,
more than most single changes do, so two builds measured one after the other (as `run.py`
rounds do) can rank either way. Here every build is started afresh for each pair, all of them
live side by side on the proxy CPU with the benchmark's configuration (`conf/betwixt.toml`),
and they are loaded in turn in short slices, the order reversed every slice, so that whatever
the machine does to one it does to the others within seconds. Each pair's median per build,
and in how many pairs B came out lower than A, say whether a difference is the change's or the
hour's.

    scripts/bench pair before=/path/to/old/betwixt after=target/release/betwixt --test paced
    scripts/bench pair on=target/release/betwixt off=target/release/betwixt --test conns \
        --http-line off='half_close = false'

`--http-line NAME=LINE` adds LINE to that build's `[servers.http]` section, which measures a
setting with one binary.

Tests: `conns` (new connections, wrk with `Connection: close`), `requests` (keep-alive
requests, wrk, 64 connections), `paced` (`betwixt-bench latency` at `--rate` requests/s over
4 connections). CPU is the build's utime + stime and the proxy CPU's ksoftirqd, as in
`run.py`, per connection or request.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import run

# Each build's ports: BASE + STRIDE * its index, then the template's ports in order.
BASE = 18300
STRIDE = 10
PORT_NAMES = ["http", "bulk", "udp_dns", "udp_stream", "tls", "tls_bulk", "sni", "sni_plain"]


class Build:
    """One build, started with the benchmark's configuration on ports of its own."""

    def __init__(self, index, name, binary, run_dir, http_lines=()):
        self.name = name
        self.dir = Path(run_dir) / f"{index}-{name}"
        self.dir.mkdir(exist_ok=True)  # the same build in every pair
        for pem in ("cert.pem", "key.pem"):
            shutil.copy(Path(run_dir) / pem, self.dir / pem)
        self.ports = {key: BASE + STRIDE * index + i for i, key in enumerate(PORT_NAMES)}
        conf = run.render("betwixt.toml", self.dir, **self.ports)
        if http_lines:
            text = Path(conf).read_text()
            added = "".join(f"{line}\n" for line in http_lines)
            Path(conf).write_text(text.replace("[servers.http]\n", "[servers.http]\n" + added, 1))
        out = open(self.dir / "betwixt.out", "ab")
        self.proc = run.pinned(run.PROXY_CPU, [binary, "--shards", "1", "-c", conf], stdout=out, stderr=out)
        run.wait_port(self.ports["http"], self.proc)

    def cpu(self):
        return run.cpu_seconds([self.proc.pid] + run.softirq_threads(run.PROXY_CPU))

    def stop(self):
        run.stop(self.proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", metavar="NAME=BINARY", help="two or more builds; the first is A")
    parser.add_argument("--test", choices=["conns", "requests", "paced"], default="paced")
    parser.add_argument("--pairs", type=int, default=5, help="sets of fresh processes")
    parser.add_argument("--slices", type=int, default=4, help="slices per build in each pair")
    parser.add_argument("--seconds", type=int, default=3, help="length of a slice")
    parser.add_argument("--rate", type=int, default=5000, help="requests/s of the paced test")
    parser.add_argument("--http-line", action="append", default=[], metavar="NAME=LINE",
                        help="a line for build NAME's [servers.http] section (repeatable)")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    if len(builds) < 2 or any(len(b) != 2 for b in builds):
        parser.error("give at least two builds as NAME=BINARY")
    http_lines = {}
    for spec in args.http_line:
        name, _, line = spec.partition("=")
        if name not in dict(builds) or not line:
            parser.error(f"--http-line {spec!r}: give NAME=LINE for one of the builds")
        http_lines.setdefault(name, []).append(line)

    run_dir = tempfile.mkdtemp(prefix="betwixt-pair-")
    run.certificate(run_dir)
    backend = run.pinned(run.LOAD_CPU, ["nginx", "-p", run_dir, "-c", run.render("backend-nginx.conf", run_dir)])
    unit = "connection" if args.test == "conns" else "request"
    per_pair = {name: [] for name, _ in builds}
    every = {name: [] for name, _ in builds}
    started = []
    try:
        run.wait_port(run.BACKEND_HTTP, backend)
        for pair in range(args.pairs):
            started = [
                Build(i, name, binary, run_dir, http_lines.get(name, ()))
                for i, (name, binary) in enumerate(builds)
            ]
            time.sleep(1)
            slices = {b.name: [] for b in started}
            for s in range(args.slices):
                for build in started if s % 2 == 0 else reversed(started):
                    before = build.cpu()
                    count = run.load(args.test, build.ports["http"], args.seconds, args.rate)
                    slices[build.name].append((build.cpu() - before) / count * 1e6)
                    time.sleep(0.5)  # closing connections settle before the next build's slice
            for build in started:
                build.stop()
            started = []
            line = []
            for name, values in slices.items():
                per_pair[name].append(statistics.median(values))
                every[name] += values
                line.append(f"{name} {per_pair[name][-1]:.1f}")
            run.log(f"pair {pair + 1}/{args.pairs}: µs per {unit}: " + "  ".join(line))
    finally:
        for build in started:
            build.stop()
        run.stop(backend)
        shutil.rmtree(run_dir, ignore_errors=True)

    a = builds[0][0]
    print(f"\nproxy CPU per {unit} ({args.test}), median of all slices; pairs where the build was lower than {a}:")
    for name, _ in builds:
        median = statistics.median(every[name])
        if name == a:
            print(f"  {name:>12}  {median:7.1f} µs")
            continue
        lower = sum(x < y for x, y in zip(per_pair[name], per_pair[a]))
        ratio = median / statistics.median(every[a])
        print(f"  {name:>12}  {median:7.1f} µs  {ratio:.3f}× {a}  lower in {lower} of {args.pairs} pairs")


if __name__ == "__main__":
    main()
