#!/usr/bin/env python3
"""Proxy CPU per request at a moderate rate, split into user space and kernel, from perf samples.

`pair.py` answers whether one build costs less CPU than another; this answers where a proxy's
CPU goes. Each target (a betwixt build, `nginx` or `haproxy`) runs alone with the benchmark's
configuration, pinned to the proxy CPU, while `betwixt-bench latency` sends `--rate` requests/s
over 4 connections (the benchmark's paced test); `perf record` samples the proxy CPU at
`--frequency` Hz meanwhile, and the samples of the proxy's threads and the proxy CPU's
`ksoftirqd` (which the benchmark's CPU figures include) are sorted into user space and kernel.
The targets run in turn, the order reversed every round; the medians over `--rounds` are
printed. At the defaults a round holds about 2,000 user-space samples of betwixt, so its
user-space figure is good to a few per cent, where the kernel's moves with the host.

    scripts/bench split betwixt=target/release/betwixt nginx haproxy --rounds 3

`--test conns` or `--test requests` runs the benchmark's closed-loop tests instead (wrk on 64
connections, new connections or keep-alive requests): the proxy CPU is then saturated, and the
figures are per connection or per request. Those moved by a quarter between rounds here, user
space included, so for a change in user space count instructions (`instructions.py --test`).

Needs `perf` (Debian's `linux-perf`) and a kernel that lets root sample the CPU.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import run

# A line of `perf report --sort pid,dso -n`: share, samples, thread id:name, object.
SAMPLE_LINE = re.compile(r"\s+[\d.]+%\s+(\d+)\s+(\d+):\S*\s+(.*\S)")


def sampled(target, run_dir, test, seconds, rate, frequency):
    """(user, kernel) µs per request (per connection for `conns`) of `target`, running alone."""
    if target in run.PEERS:
        proxy = run.Proxy(target, run_dir)
    else:
        proxy = run.Proxy("betwixt", run_dir, betwixt=target)
    data = Path(run_dir) / "perf.data"
    try:
        time.sleep(1)
        run.latency(proxy.http, 2, rate)  # connections open and settle before sampling
        perf = subprocess.Popen(["perf", "record", "-q", "-C", run.PROXY_CPU, "-F", str(frequency),
                                 "-o", str(data), "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        count = run.load(test, proxy.http, seconds, rate)
        perf.wait()
        # The threads the benchmark's CPU figures count: the proxy's (for nginx its worker's)
        # and the proxy CPU's ksoftirqd.
        threads = {int(t) for pid in proxy.pids for t in os.listdir(f"/proc/{pid}/task")}
        threads |= set(run.softirq_threads(run.PROXY_CPU))
    finally:
        proxy.stop()
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "pid,dso", "-n"],
                            capture_output=True, text=True, check=True).stdout
    user = kernel = 0
    for line in report.splitlines():
        if not (m := SAMPLE_LINE.match(line)):
            continue
        samples, thread, dso = int(m.group(1)), int(m.group(2)), m.group(3)
        if thread in threads:
            if "kernel" in dso:
                kernel += samples
            else:
                user += samples
    per_sample = 1e6 / frequency / count
    return user * per_sample, kernel * per_sample


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", metavar="NAME=BINARY|nginx|haproxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="length of each sampled run")
    parser.add_argument("--test", choices=("paced", "requests", "conns"), default="paced",
                        help="the load: paced requests at --rate (default), or the benchmark's "
                        "closed-loop keep-alive requests or new connections (wrk, 64 connections)")
    parser.add_argument("--rate", type=int, default=5000, help="requests/s over 4 connections")
    parser.add_argument("--frequency", type=int, default=9999, help="perf samples per second")
    args = parser.parse_args()
    targets = run.builds_and_peers(parser, args.targets)
    if not shutil.which("perf"):
        parser.error("perf is needed (apt-get install linux-perf)")

    unit = "connection" if args.test == "conns" else "request"
    under = f"at {args.rate} requests/s" if args.test == "paced" else "under closed-loop load"
    run_dir = tempfile.mkdtemp(prefix="betwixt-split-")
    run.certificate(run_dir)
    backend = run.pinned(run.LOAD_CPU, ["nginx", "-p", run_dir, "-c", run.render("backend-nginx.conf", run_dir)])
    figures = {name: [] for name, _ in targets}
    try:
        run.wait_port(run.BACKEND_HTTP, backend)
        for r in range(args.rounds):
            for name, target in targets if r % 2 == 0 else reversed(targets):
                user, kernel = sampled(target, run_dir, args.test, args.seconds, args.rate, args.frequency)
                figures[name].append((user, kernel))
                run.log(f"round {r + 1}/{args.rounds} {name}: user {user:.2f}  kernel {kernel:.2f} µs per {unit}")
    finally:
        run.stop(backend)
        shutil.rmtree(run_dir, ignore_errors=True)

    print(f"\nproxy CPU per {unit} {under} (perf samples, median of {args.rounds} rounds):")
    print(f"  {'':>12}  {'user':>7}  {'kernel':>7}  {'total':>7}")
    for name, values in figures.items():
        user = statistics.median(u for u, _ in values)
        kernel = statistics.median(k for _, k in values)
        total = statistics.median(u + k for u, k in values)
        print(f"  {name:>12}  {user:7.2f}  {kernel:7.2f}  {total:7.2f} µs")


if __name__ == "__main__":
    main()
