"""The benchmark's report: a Markdown table and an SVG chart drawn from the medians."""

from html import escape

# key, label, unit, True when higher is better
METRICS = [
    ("conns_per_s", "New connections", "conn/s", True),
    ("req_per_s", "Keep-alive requests (64 conns)", "req/s", True),
    ("bulk1_gbit", "Bulk, 1 stream", "Gbit/s", True),
    ("bulk8_gbit", "Bulk, 8 streams", "Gbit/s", True),
    ("p50_us", "Latency p50", "µs", False),
    ("p99_us", "Latency p99", "µs", False),
    ("p999_us", "Latency p99.9", "µs", False),
    ("rss_idle_mib", "RSS with idle connections", "MiB", False),
    ("kib_per_idle_conn", "RSS per idle connection", "KiB", False),
    ("cpu_us_per_conn", "Proxy CPU per new connection", "µs", False),
    ("cpu_us_per_req", "Proxy CPU per request", "µs", False),
    ("cpu_us_per_req_paced", "Proxy CPU per request at the latency test's rate", "µs", False),
    ("cpu_s_per_gib", "Proxy CPU per GiB moved", "s", False),
    ("bulk1_load_s_per_gib", "Load CPU per GiB, bulk 1 stream (both iperf3 ends)", "s", False),
    ("bulk8_load_s_per_gib", "Load CPU per GiB, bulk 8 streams", "s", False),
    ("bulk1_load_busy_pct", "Load CPU busy, bulk 1 stream", "%", False),
    ("bulk8_load_busy_pct", "Load CPU busy, bulk 8 streams", "%", False),
    ("bulk1_proxy_busy_pct", "Proxy CPU busy, bulk 1 stream", "%", False),
    ("bulk8_proxy_busy_pct", "Proxy CPU busy, bulk 8 streams", "%", False),
    ("machine_us_per_req_paced", "Machine CPU per request at the latency test's rate (all CPUs)", "µs", False),
    ("udp_dns_many_per_s", "UDP 64 B, 256 clients, a session per query", "dgram/s", True),
    ("udp_small_one_per_s", "UDP 64 B, 1 client, 32 in flight", "dgram/s", True),
    ("udp_big_many_per_s", "UDP 1,400 B, 64 clients, 8 in flight each", "dgram/s", True),
    ("udp_big_one_per_s", "UDP 1,400 B, 1 client, 32 in flight", "dgram/s", True),
    ("udp_dns_many_cpu_us", "Proxy CPU per UDP query (session per query)", "µs", False),
    ("udp_small_one_cpu_us", "Proxy CPU per 64 B datagram, 1 client", "µs", False),
    ("udp_big_many_cpu_us", "Proxy CPU per 1,400 B datagram, 64 clients", "µs", False),
    ("udp_big_one_cpu_us", "Proxy CPU per 1,400 B datagram, 1 client", "µs", False),
    ("udp_dns_many_loss_pct", "UDP loss, session per query", "%", False),
    ("udp_small_one_loss_pct", "UDP loss, 64 B, 1 client", "%", False),
    ("udp_big_many_loss_pct", "UDP loss, 1,400 B, 64 clients", "%", False),
    ("udp_big_one_loss_pct", "UDP loss, 1,400 B, 1 client", "%", False),
    ("tls_full_per_s", "TLS handshakes, full", "hs/s", True),
    ("tls_resumed_per_s", "TLS handshakes, resumed", "hs/s", True),
    ("tls_resumed_pct", "Handshakes resumed in the resumed test", "%", True),
    ("tls_full_cpu_us", "Proxy CPU per full TLS handshake (and request)", "µs", False),
    ("tls_resumed_cpu_us", "Proxy CPU per resumed TLS handshake (and request)", "µs", False),
    ("tls_down_gbit", "TLS bulk download, 4 conns", "Gbit/s", True),
    ("tls_up_gbit", "TLS bulk upload, 4 conns", "Gbit/s", True),
    ("tls_down_cpu_s_per_gib", "Proxy CPU per GiB, TLS download (encrypt)", "s", False),
    ("tls_up_cpu_s_per_gib", "Proxy CPU per GiB, TLS upload (decrypt)", "s", False),
    ("sni_per_s", "SNI passthrough connections", "conn/s", True),
    ("sni_plain_per_s", "Same exchange, plain tcp (no SNI)", "conn/s", True),
    ("sni_cpu_us", "Proxy CPU per SNI-routed connection", "µs", False),
    ("sni_plain_cpu_us", "Proxy CPU per plain tcp connection (same exchange)", "µs", False),
    ("sni_added_cpu_us", "SNI cost: CPU per connection over plain tcp", "µs", False),
]
LATENCY = ("p50_us", "p99_us", "p999_us")
# Figures compared by what a proxy adds over the direct path: latency, and the whole machine's
# CPU (which counts the load tools and the backend too, and work the kernel moves off the proxy).
ADDED = LATENCY + ("machine_us_per_req_paced",)
TARGETS = ["direct", "betwixt", "betwixt-accesslog", "betwixt-kernel", "betwixt-close", "haproxy", "nginx"]
NAMES = {"direct": "direct", "betwixt": "betwixt", "betwixt-accesslog": "betwixt+log",
         "betwixt-kernel": "betwixt+kernel", "betwixt-close": "betwixt+close", "haproxy": "HAProxy",
         "nginx": "nginx"}
COLORS = {"direct": "#9e9e9e", "betwixt": "#1b7f5f", "betwixt-accesslog": "#7fbf9f", "betwixt-kernel": "#0b4f3a",
          "betwixt-close": "#2e9e6e", "haproxy": "#3b6cb7", "nginx": "#c4622d"}
# betwixt variants compared with the better peer in a column of their own when in a run.
VARIANTS = ["betwixt-kernel", "betwixt-close"]


def fmt(value):
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def value(medians, target, key):
    return medians.get(target, {}).get(key)


def ratio(medians, key, other, target="betwixt"):
    mine, theirs = value(medians, target, key), value(medians, other, key)
    if key in NO_RATIO:
        return "–"
    if key in ADDED:  # compare what each proxy adds over the direct path
        direct = value(medians, "direct", key)
        if direct is None or other == "direct" or mine is None or theirs is None:
            return "–"
        mine, theirs = mine - direct, theirs - direct
    if mine is None or not theirs:
        return "–"
    return f"{mine / theirs:.2f}×"


# Figures no ratio is shown for: differences between two figures (a ratio of two small differences
# means nothing) and busy shares (they say where the limit is, not which proxy is better).
NO_RATIO = {"sni_added_cpu_us", "bulk1_load_busy_pct", "bulk8_load_busy_pct",
            "bulk1_proxy_busy_pct", "bulk8_proxy_busy_pct"}


def better_peer(medians, key, higher, target="betwixt"):
    """`target` against the better of HAProxy and nginx for this figure (the one it has to beat)."""
    peers = [p for p in ("haproxy", "nginx") if value(medians, p, key) is not None]
    if not peers or value(medians, target, key) is None:
        return "–"
    pick = max if higher else min
    best = pick(peers, key=lambda p: value(medians, p, key))
    return ratio(medians, key, best, target=target)


def measured(medians, targets):
    """The figures this run has a value for (a run of some scenarios leaves the others out)."""
    return [m for m in METRICS if any(value(medians, t, m[0]) is not None for t in targets)]


def cell(medians, target, key):
    v = value(medians, target, key)
    direct = value(medians, "direct", key)
    if key in ADDED and target != "direct" and v is not None and direct is not None:
        return f"{fmt(v)} (+{fmt(v - direct)})"
    return fmt(v)


def markdown(medians, info, args):
    targets = [t for t in TARGETS if t in medians]
    # The access log's cost, when the run has both betwixt targets.
    with_log = "betwixt" in medians and "betwixt-accesslog" in medians
    variants = [t for t in VARIANTS if t in medians]
    lines = [
        "# betwixt side-by-side benchmark",
        "",
        f"Median of {args.rounds} round(s), {args.seconds} s per load test. "
        "Each proxy pinned to CPU 1; load tools and backends on CPU 0.",
        "",
        "| Figure | unit | " + " | ".join(NAMES[t] for t in targets)
        + " | betwixt ÷ HAProxy | betwixt ÷ nginx | betwixt ÷ better peer | betwixt ÷ direct |"
        + (" betwixt+log ÷ betwixt |" if with_log else "")
        + "".join(f" {NAMES[t]} ÷ better peer |" for t in variants),
        "|---|---|" + "---:|" * (len(targets) + 4 + with_log + len(variants)),
    ]
    for key, label, unit, higher in measured(medians, targets):
        arrow = "↑" if higher else "↓"
        row = [f"{label} {arrow}", unit] + [cell(medians, t, key) for t in targets]
        row += [ratio(medians, key, "haproxy"), ratio(medians, key, "nginx"), better_peer(medians, key, higher),
                ratio(medians, key, "direct")]
        if with_log:
            row.append(ratio(medians, key, "betwixt", target="betwixt-accesslog"))
        for variant in variants:
            row.append(better_peer(medians, key, higher, target=variant))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "↑ higher is better, ↓ lower is better. Latency and machine-CPU cells show the absolute value "
        "and, in brackets, what the proxy adds over the direct path; their ratios compare those added "
        "amounts. Machine CPU is every CPU's busy time (CPUs × elapsed − idle, from /proc/stat's "
        "no-tick idle clocks), so it counts work the kernel does for a proxy on any CPU.",
        "",
        "## Machine and versions",
        "",
    ]
    lines += [f"- {k}: {escape(str(v))}" for k, v in info.items()]
    lines += [
        "",
        "## Commands",
        "",
        f"- whole run: `{args.command}`",
        "- new connections: `taskset -c 0 wrk -t1 -c64 -H 'Connection: close' -d{s}s http://127.0.0.1:PORT/`",
        "- keep-alive requests: `taskset -c 0 wrk -t1 -c64 -d{s}s http://127.0.0.1:PORT/`",
        "- bulk: `taskset -c 0 iperf3 -c 127.0.0.1 -p PORT -t {s} -P 1|8 -J`",
        f"- latency: `taskset -c 0 betwixt-bench latency 127.0.0.1:PORT --rate {args.rate} --seconds {{s}} --conns 4`",
        f"- idle memory: `taskset -c 0 betwixt-bench idle 127.0.0.1:PORT --conns {args.idle_conns}`, "
        "VmRSS of the forwarding process(es) before and while they are held open",
        "- UDP: `taskset -c 0 betwixt-bench udp 127.0.0.1:PORT --size 64|1400 --clients N --window W "
        "--seconds {s}` against `betwixt-bench udp-echo` (closed loop: a datagram unanswered for 200 ms "
        "counts as lost); a datagram = one request and its reply",
        "- TLS handshakes: `taskset -c 0 betwixt-bench handshakes 127.0.0.1:PORT --conns 32 --seconds {s} "
        "--resume 0|1 --name bench.test --ca ca.pem` (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 "
        "certificate issued by the run's CA; one HTTP request per connection through to the nginx backend)",
        "- TLS bulk: `taskset -c 0 betwixt-bench tls-bulk 127.0.0.1:PORT --conns 4 --bytes 268435456 "
        "--direction down|up --ca ca.pem` against `betwixt-bench stream-backend`",
        "- SNI: `taskset -c 0 betwixt-bench hello 127.0.0.1:PORT --conns 32 --seconds {s} --name bench.test` "
        "(a rustls ClientHello, echoed by `betwixt-bench stream-backend`), through an SNI-routed listener "
        "and through a plain tcp one",
        "- proxy CPU: utime + stime from /proc/PID/stat around each load test, plus the proxy CPU's ksoftirqd",
        "- machine CPU: CPUs × elapsed time − (idle + iowait) from /proc/stat around each load test",
        "",
    ]
    return "\n".join(lines).replace("{s}", str(args.seconds))


def svg(medians):
    """One small horizontal bar panel per figure, two panels a row."""
    targets = [t for t in TARGETS if t in medians]
    panel_w, bar_h, gap, label_w = 440, 16, 4, 70
    panel_h = 34 + len(targets) * (bar_h + gap)
    metrics = measured(medians, targets)
    cols, rows = 2, (len(metrics) + 1) // 2
    width, height = cols * panel_w + 20, rows * panel_h + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="16" font-weight="bold">betwixt vs HAProxy vs nginx '
        "(same core, medians)</text>",
    ]
    for t_index, t in enumerate(targets):
        x = 10 + t_index * 110
        out.append(f'<rect x="{x}" y="34" width="12" height="12" fill="{COLORS[t]}"/>'
                   f'<text x="{x + 16}" y="44">{NAMES[t]}</text>')
    for i, (key, label, unit, higher) in enumerate(metrics):
        px, py = 10 + (i % cols) * panel_w, 60 + (i // cols) * panel_h
        values = [value(medians, t, key) for t in targets]
        top = max((v for v in values if v is not None), default=0) or 1
        arrow = "higher is better" if higher else "lower is better"
        out.append(f'<text x="{px}" y="{py + 16}" font-weight="bold">{escape(label)} ({escape(unit)}, '
                   f"{arrow})</text>")
        for j, (t, v) in enumerate(zip(targets, values)):
            y = py + 24 + j * (bar_h + gap)
            out.append(f'<text x="{px}" y="{y + 12}">{NAMES[t]}</text>')
            if v is None:
                out.append(f'<text x="{px + label_w}" y="{y + 12}" fill="#777">n/a</text>')
                continue
            w = max(1.0, (panel_w - label_w - 80) * v / top)
            out.append(f'<rect x="{px + label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLORS[t]}"/>')
            out.append(f'<text x="{px + label_w + w + 4:.1f}" y="{y + 12}">{fmt(v)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
