#!/usr/bin/env python3
"""Proxy CPU per GiB moved through TLS to the backend (`[backends_tls]`), for one or more builds.

The main run's TLS scenarios terminate the client's TLS in front of a plain backend; this one
measures the other side. The build under test listens for plain TCP on the proxy CPU and speaks
TLS 1.3 to its backend. On the load CPU, one betwixt (the first build given) terminates TLS on
both ends of it, so that the TLS load client (`betwixt-bench tls-bulk`, 4 connections of 256
MiB) and the plain `stream-backend` serve as client and backend:

    tls-bulk -> TLS in, plain out (load CPU) -> build under test: plain in, TLS out (proxy CPU)
             -> TLS in, plain out (load CPU) -> stream-backend (load CPU)

Each round starts every build afresh, in turn, and downloads then uploads through it. CPU is the
build's utime + stime and the proxy CPU's ksoftirqd, as in `run.py`. With `--syscalls`, the
build's system calls per GiB are counted too (`perf stat` on its syscall tracepoints).

    scripts/bench tls-backend before=/path/to/old/betwixt after=target/release/betwixt
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import run

# Ports above pair.py's and instructions.py's ranges.
FRONT, UNDER_TEST, BACK = 18701, 18702, 18703
CONNS, BYTES = 4, 256 * 2**20
SYSCALLS = ["recvfrom", "sendto", "sendmsg", "io_uring_enter"]


def terminator(run_dir):
    """The load side's betwixt: TLS from the client to the build under test, and TLS from the
    build under test to the stream backend."""
    def server(name, port, to):
        return (f'[servers.{name}]\nbind = "127.0.0.1:{port}"\nprotocol = "tls"\n'
                f'[servers.{name}.tls]\ncert_path = "{run_dir}/cert.pem"\nkey_path = "{run_dir}/key.pem"\n'
                f'min_version = "tls1.3"\nciphers = ["TLS_AES_128_GCM_SHA256"]\n'
                f'[servers.{name}.discovery]\nkind = "static"\nstatic_list = ["127.0.0.1:{to}"]\n')
    path = Path(run_dir) / "terminator.toml"
    path.write_text(server("front", FRONT, UNDER_TEST) + server("back", BACK, run.BACKEND_STREAM))
    return path


def under_test(run_dir, ca):
    path = Path(run_dir) / "under-test.toml"
    path.write_text(f'[servers.p]\nbind = "127.0.0.1:{UNDER_TEST}"\n'
                    f'[servers.p.backends_tls]\nroot_ca_cert_path = "{ca}"\n'
                    f'[servers.p.discovery]\nkind = "static"\n'
                    f'static_list = ["127.0.0.1:{BACK} sni={run.TLS_NAME}"]\n')
    return path


def transfer(pid, direction, ca, syscalls):
    """One tls-bulk run; answers (CPU seconds per GiB, Gbit/s, system calls per GiB or None)."""
    perf = None
    if syscalls:
        events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-p", str(pid)],
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)  # attached before the first byte
    cpu0 = run.cpu_seconds([pid] + run.softirq_threads(run.PROXY_CPU))
    result = run.tool_json(["tls-bulk", f"127.0.0.1:{FRONT}", "--conns", CONNS, "--bytes", BYTES,
                            "--direction", direction, "--name", run.TLS_NAME, "--ca", ca])
    gib = result["bytes"] / 2**30
    per_gib = (run.cpu_seconds([pid] + run.softirq_threads(run.PROXY_CPU)) - cpu0) / gib
    counts = None
    if perf is not None:
        perf.send_signal(2)
        lines = perf.communicate()[1].strip().splitlines()
        counts = {line.split(",")[2].rsplit("sys_enter_", 1)[1]: round(int(line.split(",")[0]) / gib)
                  for line in lines if line[:1].isdigit()}
    return per_gib, result["gbit_per_s"], counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", help="NAME=PATH of a betwixt binary")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--syscalls", action="store_true", help="count system calls per GiB (needs perf)")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    run_dir = tempfile.mkdtemp(prefix="betwixt-tls-backend-")
    ca = run.certificate(run_dir)
    backend = run.pinned(run.LOAD_CPU, [run.TOOL, "stream-backend", f"127.0.0.1:{run.BACKEND_STREAM}",
                                        "--threads", 2 * CONNS])
    front = run.pinned(run.LOAD_CPU, [builds[0][1], "--shards", "1", "-c", terminator(run_dir)],
                       stdout=subprocess.DEVNULL)
    conf = under_test(run_dir, ca)
    figures = {name: {"down": [], "up": []} for name, _ in builds}
    try:
        run.wait_port(run.BACKEND_STREAM, backend)
        run.wait_port(BACK, front)
        for r in range(args.rounds):
            for name, binary in builds:
                proxy = run.pinned(run.PROXY_CPU, [binary, "--shards", "1", "-c", conf], stdout=subprocess.DEVNULL)
                try:
                    run.wait_port(UNDER_TEST, proxy)
                    for direction in ("down", "up"):
                        per_gib, gbit, counts = transfer(proxy.pid, direction, ca, args.syscalls)
                        figures[name][direction].append(per_gib)
                        calls = f", system calls per GiB {counts}" if counts else ""
                        print(f"round {r + 1} {name} {direction}: {per_gib:.3f} s CPU/GiB, {gbit:.2f} Gbit/s{calls}",
                              flush=True)
                finally:
                    run.stop(proxy)
    finally:
        run.stop(front)
        run.stop(backend)
    for name, _ in builds:
        medians = ", ".join(f"{d} {statistics.median(v):.3f}" for d, v in figures[name].items())
        print(f"{name}: median s CPU/GiB: {medians}")


if __name__ == "__main__":
    main()
