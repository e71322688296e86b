#!/usr/bin/env python3
"""User-space instructions per proxied request, counted exactly (callgrind), for builds and peers.

CPU time on a shared virtual machine moves by ±10% between runs; the instructions betwixt's own
code executes per request do not. This runs each build under valgrind's callgrind with the
benchmark's configuration (`conf/betwixt.toml`, one shard), sends `--requests` requests at
`--rate` requests/s over 4 connections (`betwixt-bench latency`), and counts the instructions
the shard's thread executed while they ran, with the executor passes that took (one pass per
wake-up at a moderate rate). Kernel work is not counted: this ranks changes to the user-space
part of the event loop, which `pair.py` cannot resolve below a few per cent.

    scripts/bench instructions before=/path/to/old/betwixt after=target/release/betwixt
    scripts/bench instructions betwixt=target/release/betwixt nginx haproxy

`nginx` and `haproxy` count the peers the same way, with the benchmark's configurations (nginx
as a single process, so that its worker is the process counted): what the same requests cost
in their user space. The rate is kept low by default because valgrind slows the proxy about
fiftyfold; the passes per request it prints tell whether the builds were compared at the same
pace.
"""

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import run
from pair import PORT_NAMES

# The configuration's ports, laid out as pair.py lays out a build's, above pair.py's range.
PORTS = {key: 18600 + i for i, key in enumerate(PORT_NAMES + ["udp_nginx"])}
PASS = "glommio::executor::LocalExecutor::run_task_queues"
START_SECONDS = 60  # every start that did not hang listened within 20 s here


def callgrind_counts(path):
    """The file's total instructions and the number of calls to each function."""
    names, calls, total, callee = {}, Counter(), 0, None
    for line in open(path):
        if m := re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?", line):
            kind, idx, name = m.groups()
            if name:
                names[idx] = name
            if kind == "cfn":
                callee = idx
        elif m := re.match(r"^calls=(\d+)", line):
            calls[names.get(callee, callee)] += int(m.group(1))
        elif m := re.match(r"^summary: (\d+)", line):
            total = int(m.group(1))
    return total, calls


def command(target, run_dir):
    """The command line that runs `target` (a betwixt binary, `nginx` or `haproxy`) on PORTS."""
    if target == "nginx":
        conf = run.render("nginx-stream.conf", run_dir, **PORTS)
        return ["nginx", "-p", run_dir, "-c", conf, "-g", "master_process off;"]
    if target == "haproxy":
        return ["haproxy", "-db", "-f", run.render("haproxy.cfg", run_dir, **PORTS)]
    return [target, "--shards", "1", "-c", run.render("betwixt.toml", run_dir, **PORTS)]


def start(argv, out, attempts=4):
    """A proxy under callgrind, listening.

    valgrind 3.19 treats `io_uring_enter` as a system call that cannot block, so a thread asleep
    in it keeps the lock valgrind's threads take turns with, and the others stop until it wakes.
    A shard that sleeps at start-up before the thread it has just woken runs therefore hangs
    the process. `--fair-sched` (turns taken in order) makes that less likely; a start that hangs is
    ended and tried again.
    """
    for attempt in range(attempts):
        for dump in Path(out).parent.glob("callgrind.out*"):
            dump.unlink()
        proc = run.pinned(run.PROXY_CPU, [
            "valgrind", "--tool=callgrind", "--fair-sched=yes", f"--callgrind-out-file={out}",
            "--instr-atstart=no", "--separate-threads=yes", *argv,
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run.wait_port(PORTS["http"], proc, timeout=START_SECONDS)
            return proc
        except RuntimeError:
            proc.kill()
            proc.wait()
            run.log(f"{argv[0]}: no listener after {START_SECONDS} s under valgrind (start {attempt + 1} of {attempts})")
    raise RuntimeError(f"{argv[0]}: never started under valgrind in {attempts} attempts")


def measure(target, run_dir, test, requests, rate, keep=None):
    """Instructions and passes of the shard thread while `requests` requests go through.

    With `keep`, the shard thread's callgrind file is kept at that path (for callgrind_annotate).
    """
    out = Path(run_dir) / "callgrind.out"
    proc = start(command(target, run_dir), out)
    try:
        time.sleep(3)  # valgrind translates the code paths on first use
        run.latency(PORTS["http"], 2, rate)  # connections open and settle before counting
        subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
        # As long as `requests` take at `rate`; the closed-loop tests on 4 connections, as fast
        # as the proxy under valgrind answers.
        sent = run.load(test, PORTS["http"], max(1, requests // rate), rate, conns=4)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        run.stop(proc)
    # One file per thread; the shard is the one that ran the most instructions (at this rate the
    # control thread wakes a few times a second; a peer's only thread is its event loop). Its
    # executor passes are counted by calls to the function that runs them, which a
    # profile-guided build (scripts/pgo) inlines: 0 then.
    best = None
    for dump in Path(run_dir).glob("callgrind.out.*"):
        total, calls = callgrind_counts(dump)
        if best is None or total > best[0]:
            best = (total, calls[PASS], dump)
    if best is None:
        raise RuntimeError(f"{target}: no thread in the callgrind output")
    if keep:
        shutil.copy(best[2], keep)
    for dump in Path(run_dir).glob("callgrind.out.*"):
        dump.unlink()
    return best[0] / sent, best[1] / sent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", metavar="NAME=BINARY|nginx|haproxy")
    parser.add_argument("--requests", type=int, default=2500)
    parser.add_argument("--rate", type=int, default=250, help="requests/s")
    parser.add_argument("--test", choices=("paced", "requests", "conns"), default="paced",
                        help="paced requests at --rate (default), or closed-loop keep-alive requests "
                        "or new connections (wrk on 4 connections) for as long as --requests at --rate takes")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each build's shard-thread profile as DIR/callgrind.NAME (read it with callgrind_annotate)")
    args = parser.parse_args()
    builds = run.builds_and_peers(parser, args.builds)

    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="betwixt-instructions-")
    run.certificate(run_dir)  # the configuration's TLS servers need one to start
    backend = run.pinned(run.LOAD_CPU, ["nginx", "-p", run_dir, "-c", run.render("backend-nginx.conf", run_dir)])
    try:
        run.wait_port(run.BACKEND_HTTP, backend)
        unit = "connection" if args.test == "conns" else "request"
        load_text = f"{args.rate} requests/s" if args.test == "paced" else "closed loop"
        print(f"user-space instructions of the shard per {unit}, {load_text} over 4 connections:")
        first = None
        for name, target in builds:
            keep = args.keep and Path(args.keep, f"callgrind.{name}")
            per_request, passes = measure(target, run_dir, args.test, args.requests, args.rate, keep)
            first = first or per_request
            print(f"  {name:>12}  {per_request:9,.0f} per {unit}  {per_request / first:.3f}×  "
                  + (f"{passes:.2f} passes per {unit} ({per_request / passes:,.0f} per pass)" if passes
                     else "" if target in run.PEERS else "executor passes not seen (inlined)"))
    finally:
        run.stop(backend)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
