#!/usr/bin/env python3
"""User-space instructions per proxied request, counted exactly (callgrind), for one or more builds.

CPU time on a shared virtual machine moves by ±10% between runs; the instructions betwixt's own
code executes per request do not. This runs each build under valgrind's callgrind with the
benchmark's configuration (`conf/betwixt.toml`, one shard), sends `--requests` requests at
`--rate` requests/s over 4 connections (`betwixt-bench latency`), and counts the instructions
the shard's thread executed while they ran, with the executor passes that took (one pass per
wake-up at a moderate rate). Kernel work is not counted: this ranks changes to the user-space
part of the event loop, which `pair.py` cannot resolve below a few per cent.

    scripts/bench instructions before=/path/to/old/betwixt after=target/release/betwixt

The rate is kept low by default because valgrind slows the proxy about fiftyfold; the passes
per request it prints tell whether the builds were compared at the same pace.
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
PORTS = {key: 18600 + i for i, key in enumerate(PORT_NAMES)}
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


def start(binary, conf, out, attempts=4):
    """betwixt under callgrind, listening.

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
            "--instr-atstart=no", "--separate-threads=yes", binary, "--shards", "1", "-c", conf,
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run.wait_port(PORTS["http"], proc, timeout=START_SECONDS)
            return proc
        except RuntimeError:
            proc.kill()
            proc.wait()
            run.log(f"{binary}: no listener after {START_SECONDS} s under valgrind (start {attempt + 1} of {attempts})")
    raise RuntimeError(f"{binary}: never started under valgrind in {attempts} attempts")


def measure(binary, run_dir, requests, rate):
    """Instructions and passes of the shard thread while `requests` requests go through."""
    out = Path(run_dir) / "callgrind.out"
    conf = run.render("betwixt.toml", run_dir, **PORTS)
    proc = start(binary, conf, out)
    try:
        time.sleep(3)  # valgrind translates the code paths on first use
        run.latency(PORTS["http"], 2, rate)  # connections open and settle before counting
        subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
        sent = run.latency(PORTS["http"], max(1, requests // rate), rate)["count"]
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        run.stop(proc)
    # One file per thread; the shard is the one that ran the most instructions (at this rate the
    # control thread wakes a few times a second). Its executor passes are counted by calls to the
    # function that runs them, which a profile-guided build (scripts/pgo) inlines: 0 then.
    best = None
    for dump in Path(run_dir).glob("callgrind.out.*"):
        total, calls = callgrind_counts(dump)
        if best is None or total > best[0]:
            best = (total, calls[PASS])
        dump.unlink()
    if best is None:
        raise RuntimeError(f"{binary}: no thread in the callgrind output")
    return best[0] / sent, best[1] / sent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", metavar="NAME=BINARY")
    parser.add_argument("--requests", type=int, default=2500)
    parser.add_argument("--rate", type=int, default=250, help="requests/s")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    if any(len(b) != 2 for b in builds):
        parser.error("give builds as NAME=BINARY")

    run_dir = tempfile.mkdtemp(prefix="betwixt-instructions-")
    run.certificate(run_dir)  # the configuration's TLS servers need one to start
    backend = run.pinned(run.LOAD_CPU, ["nginx", "-p", run_dir, "-c", run.render("backend-nginx.conf", run_dir)])
    try:
        run.wait_port(run.BACKEND_HTTP, backend)
        print(f"user-space instructions of the shard per request, {args.rate} requests/s over 4 connections:")
        first = None
        for name, binary in builds:
            per_request, passes = measure(binary, run_dir, args.requests, args.rate)
            first = first or per_request
            print(f"  {name:>12}  {per_request:9,.0f} per request  {per_request / first:.3f}×  "
                  + (f"{passes:.2f} passes per request ({per_request / passes:,.0f} per pass)" if passes
                     else "executor passes not seen (inlined)"))
    finally:
        run.stop(backend)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
