#!/usr/bin/env python3
"""Stress loop for the event loop's sleep and wake-up path (a missed wake-up leaves a shard asleep
with work to do). Starts an echo backend and betwixt (one shard), then loops `betwixt-bench burst`:
bursts of connections opened at once, each sending a tag and waiting for its echo, with random idle
pauses between bursts so the shard goes to sleep at every moment of the next one.

A connection whose echo has not come back after --timeout seconds is reported, and while the fault
is live the shard thread and its io_uring descriptors are sampled for a few seconds: thread state
and wait channel, submission and completion queue positions, armed polls, pending task work. A
shard asleep in `io_cqring_wait` with nothing moving on any ring while a connection waits is a
missed wake-up; a shard that is runnable or making progress is only slow (an overloaded machine).
Handshakes dropped at a full accept queue delay connections by seconds through TCP retransmission,
so each round reports the kernel's ListenOverflows count, and bursts stay below the backlog.

    bench/stress.py [--betwixt target/release/betwixt] [--conns 500] [--rounds 2000]
                    [--pause-ms 20] [--timeout 30]

Exit status 0 when every round was served, 1 after a stuck connection (the report is printed).
"""
import argparse
import asyncio
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_backend(port, ready):
    """One epoll loop (asyncio): no thread per connection whose scheduling could delay an echo."""
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096, reuse_address=True)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def sample(pid, count, interval):
    """Lines describing the shard threads and every io_uring descriptor of `pid`, `count` times."""
    fds = [f for f in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{f}") == "anon_inode:[io_uring]"]
    tasks = [t for t in os.listdir(f"/proc/{pid}/task")
             if Path(f"/proc/{pid}/task/{t}/comm").read_text().startswith("shard")]
    start, lines = time.time(), []
    for _ in range(count):
        out = [f"{(time.time() - start) * 1000:7.1f} ms"]
        for t in tasks:
            stat = Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
            wchan = Path(f"/proc/{pid}/task/{t}/wchan").read_text()
            out.append(f"thread {t}: {stat[0]} {wchan or '-'} utime {stat[11]} stime {stat[12]}")
        for fd in fds:
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            field = lambda k: (re.search(rf"^{k}:\s*(\d+)", info, re.M) or [None, "?"])[1]
            polls = re.findall(r"op=(\d+), task_works=(\d+)", info)
            work = "".join(sorted({w for _, w in polls}))
            ops = collections.Counter(op for op, _ in polls)
            armed = " ".join(f"op{op}x{n}" for op, n in sorted(ops.items())) or "none"
            out.append(f"ring fd {fd}: sq {field('SqHead')}/{field('SqTail')} cq {field('CqHead')}/"
                       f"{field('CqTail')} armed {armed} task work {work or '-'}")
        lines.append(" | ".join(out))
        time.sleep(interval)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betwixt", default=str(ROOT / "target" / "release" / "betwixt"))
    parser.add_argument("--tool", default=str(ROOT / "target" / "release" / "betwixt-bench"))
    parser.add_argument("--conns", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--pause-ms", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()

    backend_port, proxy_port = free_port(), free_port()
    ready = threading.Event()
    threading.Thread(target=echo_backend, args=(backend_port, ready), daemon=True).start()
    ready.wait(10)
    work = tempfile.mkdtemp(prefix="betwixt-stress-")
    config = Path(work, "stress.toml")
    config.write_text(f"""[logging]
level = "warn"
output = "stderr"
[servers.stress]
bind = "127.0.0.1:{proxy_port}"
protocol = "tcp"
  [servers.stress.discovery]
  kind = "static"
  static_list = ["127.0.0.1:{backend_port}"]
""")
    betwixt = subprocess.Popen([args.betwixt, "-c", str(config), "--shards", "1"])
    burst = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        burst = subprocess.Popen(
            [args.tool, "burst", f"127.0.0.1:{proxy_port}", "--conns", str(args.conns), "--rounds",
             str(args.rounds), "--pause-ms", str(args.pause_ms), "--timeout", str(args.timeout),
             "--hold", "20"],
            stdout=subprocess.PIPE, text=True)
        for line in burst.stdout:
            if "STUCK" not in line:
                if re.search(r"round \d+0: ", line):
                    print(line, end="", flush=True)
                continue
            print(line, end="", flush=True)
            client = re.search(r"client 127\.0\.0\.1:(\d+)", line)
            if client:
                print(subprocess.run(["ss", "-tni", "state", "all", f"( sport = :{client[1]} or dport = :{client[1]} )"],
                                     capture_output=True, text=True).stdout)
            print("\n".join(sample(betwixt.pid, 30, 0.1)))
            # Bytes waiting in a socket betwixt holds: unread (Recv-Q) or unsent (Send-Q).
            sockets = subprocess.run(["ss", "-tnpH", "state", "all"], capture_output=True, text=True).stdout
            print("betwixt's sockets with bytes queued:")
            for row in sockets.splitlines():
                cols = row.split()
                if f"pid={betwixt.pid}," in row and (cols[1] != "0" or cols[2] != "0"):
                    print("  " + row)
            burst.wait()
            return 1
        return 0 if burst.wait() == 0 else 1
    finally:
        for process in (burst, betwixt):
            if process and process.poll() is None:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
