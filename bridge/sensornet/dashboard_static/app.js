// sensornet dashboard: device cards and a live uPlot chart per quantity.
// Data: /api/history (the chosen range, from SQLite) then /ws (live events), both with ?token= when
// the page was opened with one. See sensornet/dashboard_web.py for the shapes.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const HEALTH = "system";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const HEALTH_FIELDS = [["uptime_s", "Uptime", "s"], ["heap_free", "Free heap", "B"], ["rssi_dbm", "Wi-Fi signal", "dBm"],
  ["reset_cause", "Reset cause", ""], ["version", "Firmware", ""], ["dropped", "Dropped", ""],
  ["wifi_reconnects", "Wi-Fi reconnects", ""], ["mqtt_reconnects", "MQTT reconnects", ""]];

const state = {
  range: Number(document.getElementById("range").value),
  devices: new Map(),   // client_id -> device (sensornet.dashboard.device_view)
  series: new Map(),    // quantity -> Map(client_id -> [[t, value], ...])
  charts: new Map(),    // quantity -> {plot, ids (client ids in the plot's series order), el}
  meta: {},             // quantity -> {name, unit}
  dirty: new Set(),     // quantities whose chart needs new data
};

// charts and readings: the measurements first, then the sensors' settings and raw channels
const FIRST = ["lux", "temperature_c", "humidity_pct", "pressure_hpa"];
function before(a, b) {
  const ra = FIRST.includes(a) ? FIRST.indexOf(a) : FIRST.length;
  const rb = FIRST.includes(b) ? FIRST.indexOf(b) : FIRST.length;
  return ra !== rb ? ra < rb : a < b;
}

function withToken(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function label(quantity) {
  const m = state.meta[quantity];
  return m ? `${m.name}${m.unit ? " (" + m.unit + ")" : ""}` : quantity;
}

function unit(quantity) {
  const m = state.meta[quantity];
  return m && m.unit ? " " + m.unit : "";
}

function ago(t) {
  if (!t) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return new Date(t * 1000).toLocaleString();
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
  return String(v);
}

// ---- device cards ----

function card(clientId) {
  let el = document.querySelector(`.card[data-client-id="${CSS.escape(clientId)}"]`);
  if (!el) {
    el = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
    el.dataset.clientId = clientId;
    el.querySelector(".name").textContent = clientId;
    const cards = [...document.querySelectorAll(".card")];
    const after = cards.find((c) => c.dataset.clientId > clientId);
    document.getElementById("devices").insertBefore(el, after || null);
    document.getElementById("no-devices").hidden = true;
  }
  return el;
}

function renderDevice(d) {
  state.devices.set(d.client_id, d);
  const el = card(d.client_id);
  const status = el.querySelector(".status");
  status.textContent = d.status || "unknown";
  status.className = "status " + (d.status || "");
  el.classList.toggle("offline", d.status === "offline");
  el.querySelector(".mac").textContent = d.mac || "unknown";
  el.dataset.lastSeen = d.last_seen || "";
  el.querySelector(".last-seen").textContent = ago(d.last_seen);
  const fault = el.querySelector(".fault");
  fault.textContent = d.fault || "no health report";
  fault.classList.toggle("active", !!d.health && d.health.fault > 0);
  const health = el.querySelector(".health");
  health.replaceChildren();
  el.querySelector(".health-box").hidden = !d.health;
  el.querySelector(".health-box").open = !!d.health;
  for (const [key, name, u] of HEALTH_FIELDS) {
    if (!d.health || d.health[key] === undefined) continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.className = "health-" + key;
    dd.textContent = fmt(d.health[key]) + (u ? " " + u : "");
    health.append(dt, dd);
  }
  const error = el.querySelector(".error");
  error.hidden = !d.last_error;
  if (d.last_error) error.textContent = `command ${d.last_error.cmd}: ${d.last_error.error}`;
}

function renderReading(ev) {
  if (ev.sensor === HEALTH) return;
  const dl = card(ev.client_id).querySelector(".readings");
  for (const [q, v] of Object.entries(ev.values)) {
    if (typeof v !== "number" && v !== null) continue;
    let dd = dl.querySelector(`dd[data-quantity="${CSS.escape(q)}"]`);
    if (!dd) {
      const dt = document.createElement("dt");
      dt.textContent = label(q);
      dd = document.createElement("dd");
      dd.dataset.quantity = q;
      const next = [...dl.querySelectorAll("dd")].find((e) => before(q, e.dataset.quantity));
      dl.insertBefore(dt, next ? next.previousElementSibling : null);
      dl.insertBefore(dd, next ? next.previousElementSibling : null);
    }
    dd.textContent = fmt(v) + (v === null ? "" : unit(q));
  }
  const d = state.devices.get(ev.client_id);
  if (d) { d.last_seen = ev.t; }
  card(ev.client_id).dataset.lastSeen = ev.t;
}

function forget(clientId) {
  state.devices.delete(clientId);
  const el = document.querySelector(`.card[data-client-id="${CSS.escape(clientId)}"]`);
  if (el) el.remove();
}

setInterval(() => {
  for (const el of document.querySelectorAll(".card")) {
    el.querySelector(".last-seen").textContent = ago(Number(el.dataset.lastSeen) || null);
  }
}, 1000);

// ---- charts ----

function aligned(perDevice, ids) {
  // uPlot wants one x array and a y array per series, null where a series has no point.
  const xs = [...new Set(ids.flatMap((id) => perDevice.get(id).map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = ids.map((id) => {
    const y = new Array(xs.length).fill(null);
    for (const [t, v] of perDevice.get(id)) y[index.get(t)] = v;
    return y;
  });
  return [xs, ...ys];
}

function drawChart(quantity) {
  const perDevice = state.series.get(quantity);
  const ids = [...perDevice.keys()].sort();
  let chart = state.charts.get(quantity);
  const box = document.getElementById("charts");
  if (chart && chart.ids.join() !== ids.join()) {
    chart.plot.destroy();
    chart.el.remove();
    chart = null;
  }
  const data = aligned(perDevice, ids);
  if (!chart) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.quantity = quantity;
    const h = document.createElement("h3");
    h.textContent = label(quantity);
    el.append(h);
    const after = [...box.children].find((c) => before(quantity, c.dataset.quantity));
    box.insertBefore(el, after || null);
    const opts = {
      width: Math.max(320, el.clientWidth - 16), height: 220,
      scales: { x: { time: true } },
      series: [{}, ...ids.map((id, i) => ({ label: id, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
      axes: [{}, { label: state.meta[quantity] ? state.meta[quantity].unit || "" : "", size: 70 }],
    };
    chart = { plot: new uPlot(opts, data, el), ids, el };
    state.charts.set(quantity, chart);
  } else {
    chart.plot.setData(data);
  }
  // the points the chart holds, over all its series (two readings in one millisecond share an x)
  chart.el.dataset.points = String(ids.reduce((n, id) => n + perDevice.get(id).length, 0));
}

function addPoint(quantity, clientId, t, v) {
  if (!state.series.has(quantity)) state.series.set(quantity, new Map());
  const perDevice = state.series.get(quantity);
  if (!perDevice.has(clientId)) perDevice.set(clientId, []);
  const points = perDevice.get(clientId);
  points.push([t, v]);
  const cutoff = Date.now() / 1000 - state.range;
  while (points.length && points[0][0] < cutoff) points.shift();
  state.dirty.add(quantity);
}

function redraw() {
  for (const q of state.dirty) drawChart(q);
  state.dirty.clear();
}
setInterval(redraw, 500);

async function loadHistory() {
  const r = await fetch(withToken(`/api/history?range=${state.range}`));
  if (!r.ok) throw new Error(`history: HTTP ${r.status}`);
  const body = await r.json();
  for (const chart of state.charts.values()) { chart.plot.destroy(); chart.el.remove(); }
  state.charts.clear();
  state.series.clear();
  for (const [q, perDevice] of Object.entries(body.quantities)) {
    state.series.set(q, new Map(Object.entries(perDevice)));
    state.dirty.add(q);
  }
  redraw();
  document.getElementById("csv").href = withToken(`/api/history.csv?range=${state.range}`);
}

document.getElementById("range").addEventListener("change", (e) => {
  state.range = Number(e.target.value);
  loadHistory().catch(console.error);
});

// ---- live ----

function connect() {
  const link = document.getElementById("link");
  const ws = new WebSocket(withToken(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`));
  ws.onopen = () => { link.textContent = "live"; link.classList.add("live"); loadHistory().catch(console.error); };
  ws.onclose = () => { link.textContent = "reconnecting"; link.classList.remove("live"); setTimeout(connect, 1000); };
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "devices") {
      state.meta = ev.quantities || {};
      for (const d of ev.devices) renderDevice(d);
      for (const el of document.querySelectorAll(".card")) {
        if (!ev.devices.some((d) => d.client_id === el.dataset.clientId)) forget(el.dataset.clientId);
      }
    } else if (ev.type === "device") {
      renderDevice(ev.device);
    } else if (ev.type === "reading") {
      renderReading(ev);
      if (ev.sensor !== HEALTH) {
        for (const [q, v] of Object.entries(ev.values)) {
          if (typeof v === "number") addPoint(q, ev.client_id, ev.t, v);
        }
      }
    } else if (ev.type === "forget") {
      forget(ev.client_id);
    }
  };
}
connect();
