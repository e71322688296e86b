// betwixt's live dashboard. Reads the REST API once a second (GET /, /servers and
// /servers/NAME/stats) and draws one card per server: its settings, a backend table and two
// charts. Every name and value reaches the page as text (textContent, text nodes), never as
// markup: server and backend names come from configuration, API clients and discovery.
"use strict";

(() => {
  const PERIOD_MS = 1000;
  const HISTORY = 120; // samples kept per chart: two minutes

  // The API's root, relative to this page (so that a reverse proxy's path prefix works), with
  // any user:password@ from the address bar removed: fetch() refuses URLs that carry
  // credentials, and the browser adds the ones it authenticated the page with by itself.
  const root = new URL(".", location.href);
  root.username = "";
  root.password = "";
  root.search = "";
  root.hash = "";

  async function get(path) {
    const response = await fetch(new URL(path, root), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i === 0 ? n : n.toFixed(1).replace(/\.0$/, "")} ${units[i]}`;
  }

  const rate = (n) => `${bytes(n)}/s`;
  const count = (n) => String(n);

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // A line chart of the last HISTORY samples, newest on the right, on a <canvas>.
  class Chart {
    constructor(title, series, format, base) {
      this.series = series; // [{key, label, color: a CSS variable, dashed}]; app.css colours .key.KEY
      this.format = format;
      this.base = base; // the unit's step: 1000 for counts, 1024 for bytes
      this.canvas = el("canvas", { class: "chart", role: "img", "aria-label": title });
      this.canvas.dataset.points = "0";
      const legend = series.map((s) => el("span", { class: `key ${s.key}` }, s.label));
      this.now = el("span", { class: "now" });
      this.root = el("figure", {}, el("figcaption", {}, title, " ", ...legend, this.now), this.canvas);
    }

    draw(samples) {
      const canvas = this.canvas;
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (!width || !height) return;
      if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
      if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
      const g = canvas.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, width, height);

      let max = 0;
      for (const sample of samples) for (const s of this.series) max = Math.max(max, sample[s.key]);
      const top = niceCeiling(max, this.base);
      const step = width / (HISTORY - 1);
      const y = (v) => height - 1 - (v / top) * (height - 14);

      g.strokeStyle = css("--grid");
      g.fillStyle = css("--muted");
      g.lineWidth = 1;
      g.font = "10px system-ui, sans-serif";
      g.textBaseline = "top";
      for (const fraction of [0.5, 1]) {
        const at = Math.round(y(top * fraction)) + 0.5;
        g.beginPath();
        g.moveTo(0, at);
        g.lineTo(width, at);
        g.stroke();
      }
      g.fillText(this.format(top), 2, 1);

      const first = HISTORY - samples.length;
      for (const s of this.series) {
        if (samples.length === 0) break;
        const color = css(s.color);
        g.beginPath();
        samples.forEach((sample, i) => {
          const x = (first + i) * step;
          if (i === 0) g.moveTo(x, y(sample[s.key]));
          else g.lineTo(x, y(sample[s.key]));
        });
        g.strokeStyle = color;
        g.lineWidth = 1.5;
        // A dashed line lets an equal series under it show (rx = tx for an echo).
        g.setLineDash(s.dashed ? [4, 3] : []);
        g.stroke();
        g.setLineDash([]);
        g.lineTo((first + samples.length - 1) * step, height);
        g.lineTo(first * step, height);
        g.closePath();
        g.globalAlpha = 0.12;
        g.fillStyle = color;
        g.fill();
        g.globalAlpha = 1;
      }

      const last = samples[samples.length - 1];
      this.now.textContent = last ? this.series.map((s) => `${s.label} ${this.format(last[s.key])}`).join("  ") : "";
      canvas.dataset.points = String(samples.length);
      canvas.dataset.max = String(max);
    }
  }

  // The chart's top: at least `value` (and 1), a round number in the unit it is shown in
  // (1, 2 or 5 times a power of ten of units, kibibytes ...: 500 KiB/s rather than 488.3 KiB/s).
  function niceCeiling(value, base) {
    if (value <= 1) return 1;
    const unit = base ** Math.floor(Math.log(value) / Math.log(base));
    const inUnits = value / unit;
    const power = 10 ** Math.floor(Math.log10(inUnits));
    const m = [1, 2, 5, 10].find((m) => m * power >= inUnits) || 10;
    // Never past the next unit: 1 KiB rather than 2000 B.
    return Math.min(m * power * unit, unit * base);
  }

  // What a backend's row says: draining and leaving override the healthcheck's verdict.
  function backendState(stats) {
    if (stats.draining) return ["draining", "drained through the API: no new connections"];
    if (!stats.discovered) return ["leaving", "gone from discovery; open connections finish"];
    if (!stats.live) return ["down", "failing its healthcheck: gets no connections"];
    return ["live", "healthy: takes connections"];
  }

  function healthcheck(config) {
    const check = config.healthcheck || { kind: "none" };
    if (check.kind === "none") return "no healthcheck";
    return `${check.kind} check every ${check.interval} (fails ${check.fails}, passes ${check.passes})`;
  }

  const COLUMNS = ["state", "backend", "weight", "priority", "active", "total", "refused", "rx/s", "tx/s", "rx", "tx"];

  class ServerView {
    constructor(name) {
      this.samples = [];
      this.meta = el("p", { class: "meta" });
      this.numbers = el("p", { class: "numbers" });
      this.connections = new Chart("active connections", [{ key: "active", label: "open", color: "--conn" }], count, 1000);
      this.traffic = new Chart("traffic", [
        { key: "rx", label: "rx", color: "--rx" },
        { key: "tx", label: "tx", color: "--tx", dashed: true },
      ], rate, 1024);
      this.rows = el("tbody");
      const head = el("tr", {}, ...COLUMNS.map((c) => el("th", {}, c)));
      this.root = el("section", { class: "server" },
        el("h2", {}, name),
        this.meta,
        this.numbers,
        el("div", { class: "charts" }, this.connections.root, this.traffic.root),
        el("table", {}, el("thead", {}, head), this.rows));
      this.root.dataset.server = name;
    }

    update(config, stats) {
      const discovery = stats.discovery;
      this.meta.replaceChildren(
        [config.bind, config.protocol, config.balance, healthcheck(config),
          `${discovery.kind} discovery ${discovery.state}`].join(" · "));
      if (discovery.last_error && discovery.state === "failing") {
        this.meta.append(el("span", { class: "error" }, ` (${discovery.last_error})`));
      }
      const live = stats.backends.filter((b) => b.stats.live && b.stats.discovered).length;
      this.numbers.replaceChildren(
        number("active", count(stats.active_connections)),
        number("rx", rate(stats.rx_second)),
        number("tx", rate(stats.tx_second)),
        number("received", bytes(stats.rx_total)),
        number("sent", bytes(stats.tx_total)),
        number("backends live", `${live} of ${stats.backends.length}`));

      this.rows.replaceChildren(...stats.backends.map(backendRow));
      if (stats.backends.length === 0) {
        this.rows.append(el("tr", {}, el("td", { colspan: String(COLUMNS.length), class: "empty" }, "no backends")));
      }

      this.samples.push({ active: stats.active_connections, rx: stats.rx_second, tx: stats.tx_second });
      if (this.samples.length > HISTORY) this.samples.shift();
      this.draw();
    }

    draw() {
      this.connections.draw(this.samples);
      this.traffic.draw(this.samples);
    }
  }

  function number(label, value) {
    return el("span", {}, el("b", {}, value), ` ${label}`);
  }

  function backendRow(backend) {
    const s = backend.stats;
    const [state, why] = backendState(s);
    const address = `${backend.host}:${backend.port}`;
    const name = el("td", { class: "name" }, address);
    if (backend.sni) name.append(el("small", {}, ` sni ${backend.sni}`));
    const row = el("tr", {},
      el("td", {}, el("span", { class: `state ${state}`, title: why }, state)),
      name,
      el("td", {}, count(backend.weight)),
      el("td", {}, count(backend.priority)),
      el("td", {}, count(s.active_connections)),
      el("td", {}, count(s.total_connections)),
      el("td", {}, count(s.refused_connections)),
      el("td", {}, rate(s.rx_second)),
      el("td", {}, rate(s.tx_second)),
      el("td", {}, bytes(s.rx)),
      el("td", {}, bytes(s.tx)));
    row.dataset.backend = address;
    row.dataset.state = state;
    return row;
  }

  const main = document.getElementById("servers");
  const status = document.getElementById("status");
  const processInfo = document.getElementById("process");
  const views = new Map();

  function render(configs, stats) {
    const names = Object.keys(configs).filter((name) => stats[name]).sort();
    for (const [name, view] of views) {
      if (!names.includes(name)) {
        view.root.remove();
        views.delete(name);
      }
    }
    const sections = names.map((name) => {
      let view = views.get(name);
      if (!view) {
        view = new ServerView(name);
        views.set(name, view);
      }
      return view;
    });
    const cards = sections.map((v) => v.root);
    // Moved only when the list changed, so that a selection in the page survives updates.
    const same = cards.length === main.children.length && cards.every((card, i) => main.children[i] === card);
    if (!same) main.replaceChildren(...cards);
    if (names.length === 0) main.replaceChildren(el("p", { class: "empty" }, "No servers run."));
    // Draw after the cards are in the page: a canvas measures its size there.
    names.forEach((name, i) => sections[i].update(configs[name], stats[name]));
  }

  async function tick() {
    const started = Date.now();
    try {
      const [info, configs] = await Promise.all([get(""), get("servers")]);
      const names = Object.keys(configs);
      // One name's failure (deleted meanwhile) leaves the others shown.
      const answers = await Promise.all(
        names.map((name) => get(`servers/${encodeURIComponent(name)}/stats`).catch(() => null)));
      const stats = {};
      names.forEach((name, i) => { stats[name] = answers[i]; });
      render(configs, stats);
      processInfo.textContent = `${info.version} · pid ${info.pid} · up ${info.uptime.replace(/\.\d+/, "")}`;
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      status.dataset.state = "ok";
    } catch (error) {
      status.textContent = `cannot read the API: ${error.message}`;
      status.dataset.state = "error";
    }
    setTimeout(tick, Math.max(100, PERIOD_MS - (Date.now() - started)));
  }

  // A resized window redraws at the new size without waiting for data.
  window.addEventListener("resize", () => views.forEach((view) => view.draw()));
  tick();
})();
