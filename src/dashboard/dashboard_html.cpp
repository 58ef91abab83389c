// The full dashboard page (GET / in a browser): topology, nodes, charts, proxy split, events.
// Made to be read from across the room: big type, one strong colour per role and health.
#include "dashboard/assets.hpp"

namespace pgfleet::dashboard {

const char* const kDashboardHtml = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgfleet dashboard</title>
<style>
:root { --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e;
        --primary:#2ea043; --replica:#1f6feb; --warn:#d29922; --down:#f85149; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:18px/1.3 "DejaVu Sans", system-ui, sans-serif; }
header { display:flex; align-items:center; gap:24px; padding:10px 20px; background:var(--panel); border-bottom:2px solid var(--line); }
header h1 { font-size:26px; margin:0; font-weight:700; }
#primary-badge { font-size:30px; font-weight:800; padding:4px 18px; border-radius:8px; background:var(--primary); }
#primary-badge.none { background:var(--down); }
.tag { font-size:18px; color:var(--dim); }
.tag b { color:var(--text); }
#conn { margin-left:auto; font-size:18px; }
#conn.bad { color:#fff; background:var(--down); padding:4px 12px; border-radius:6px; font-weight:700; }
main { display:grid; grid-template-columns: 430px 1fr; gap:14px; padding:14px 20px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:10px 14px; }
section h2 { margin:0 0 6px; font-size:15px; text-transform:uppercase; letter-spacing:.08em; color:var(--dim); }
#topology svg { width:100%; height:250px; display:block; }
#cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(225px, 1fr)); gap:10px; }
.card { border-radius:10px; padding:8px 12px; background:#0b0f14; border:3px solid var(--line); }
.card .head { display:flex; justify-content:space-between; align-items:baseline; }
.card .name { font-size:28px; font-weight:800; }
.card .role { font-size:16px; font-weight:800; text-transform:uppercase; padding:2px 10px; border-radius:6px; color:#fff; }
.card .state { font-size:16px; color:var(--dim); margin:2px 0 6px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.card .kv { display:grid; grid-template-columns:repeat(3, 1fr); gap:4px 10px; }
.card .kv div { font-size:13px; color:var(--dim); text-transform:uppercase; }
.card .kv b { display:block; font-size:23px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; color:var(--text); text-transform:none; }
.card .pending { color:var(--warn); white-space:normal; font-size:14px; margin:6px 0 0; }
.bars { margin-top:6px; display:grid; grid-template-columns:52px 1fr 56px; gap:3px 8px; font-size:14px; align-items:center; }
.bar { height:12px; background:#21262d; border-radius:6px; overflow:hidden; }
.bar i { display:block; height:100%; background:var(--replica); }
.bar i.hot { background:var(--down); } .bar i.warm { background:var(--warn); }
#charts { display:grid; grid-template-columns:1fr 1fr; gap:12px; margin-top:10px; }
canvas { width:100%; height:150px; display:block; }
.legend { font-size:14px; color:var(--dim); }
.legend span { margin-right:12px; }
#split .row { display:flex; height:30px; border-radius:6px; overflow:hidden; margin:4px 0; }
#split .row div { display:flex; align-items:center; justify-content:center; font-weight:700; font-size:15px; color:#fff; }
#events ol { list-style:none; margin:0; padding:0; max-height:250px; overflow:hidden; }
#events li { padding:4px 0; border-bottom:1px solid var(--line); font-size:16px; }
#events li time { color:var(--dim); margin-right:8px; font-variant-numeric:tabular-nums; }
#events li .kind { font-weight:800; text-transform:uppercase; font-size:14px; padding:1px 6px; border-radius:4px; margin-right:6px; }
.k-failover, .k-down { background:var(--down); } .k-switchover, .k-leader { background:var(--warn); color:#000; }
.k-up { background:var(--primary); } .k-role, .k-scale { background:var(--replica); }
.left > section + section { margin-top:14px; }
</style></head>
<body>
<header>
  <h1>pgfleet <span id="cluster" class="tag"></span></h1>
  <div class="tag">PRIMARY</div><div id="primary-badge" class="none">–</div>
  <div class="tag">sync <b id="sync">–</b></div>
  <div class="tag" id="backup" hidden>last backup <b id="backup-age">–</b></div>
  <div class="tag" id="paused" hidden><b style="color:var(--warn)">PAUSED</b> no automatic failover</div>
  <div id="conn">connecting…</div>
</header>
<main>
  <div class="left">
    <section id="topology"><h2>Topology: who streams from whom</h2><svg id="topo" viewBox="0 0 400 250"></svg></section>
    <section id="split"><h2>Proxy: server connections by node</h2><div class="row" id="split-row"></div><div class="legend" id="split-note"></div></section>
    <section id="events"><h2>Events</h2><ol id="event-list"></ol></section>
  </div>
  <div>
    <section><h2>Nodes</h2><div id="cards"></div></section>
    <div id="charts">
      <section><h2>Transactions per second (15 min)</h2><canvas id="tps-chart" width="800" height="300"></canvas><div class="legend" id="tps-legend"></div></section>
      <section><h2>Replication lag, bytes (15 min)</h2><canvas id="lag-chart" width="800" height="300"></canvas><div class="legend" id="lag-legend"></div></section>
    </div>
  </div>
</main>
<script src="/dashboard/common.js"></script>
<script>
"use strict";
const palette = ["#3fb950", "#58a6ff", "#d2a8ff", "#ffa657", "#79c0ff", "#ff7b72", "#e3b341", "#56d4dd"];
const nodeColor = {};
function colorOf(name) {
  if (!nodeColor[name]) nodeColor[name] = palette[Object.keys(nodeColor).length % palette.length];
  return nodeColor[name];
}

function drawTopology(c) {
  const svg = document.getElementById("topo");
  svg.replaceChildren();
  const byName = Object.fromEntries(c.nodes.map(n => [n.name, n]));
  const depth = n => { let d = 0, cur = n, seen = new Set();
    while (cur && cur.upstream && byName[cur.upstream] && !seen.has(cur.name)) { seen.add(cur.name); cur = byName[cur.upstream]; d++; }
    return cur && (cur.name === c.leader || cur.role === "primary") ? d : (n.role === "primary" ? 0 : 1); };
  const rows = [];
  for (const n of c.nodes) { const d = Math.min(depth(n), 3); (rows[d] = rows[d] || []).push(n); }
  const pos = {};
  const rowCount = rows.length;
  rows.forEach((row, d) => (row || []).forEach((n, i) => {
    pos[n.name] = { x: 400 * (i + 1) / (row.length + 1), y: rowCount <= 1 ? 125 : 30 + d * (190 / Math.max(1, rowCount - 1)) };
  }));
  for (const n of c.nodes) {
    if (!n.upstream || !pos[n.upstream]) continue;
    const a = pos[n.upstream], b = pos[n.name];
    const ok = n.state === "streaming";
    svg.append(pg.svg("line", { x1: a.x, y1: a.y + 22, x2: b.x, y2: b.y - 22, stroke: ok ? "#8b949e" : "#f85149",
      "stroke-width": 4, "stroke-dasharray": ok ? "" : "8 6", "data-edge": n.upstream + "->" + n.name }));
    svg.append(pg.svg("text", { x: b.x, y: b.y - 30, "text-anchor": "middle", fill: "#e6edf3", "font-size": 15 },
      n.sync_state ? n.sync_state + " · " + pg.bytes(n.lag_bytes) : pg.bytes(n.lag_bytes)));
  }
  for (const n of c.nodes) {
    const p = pos[n.name];
    const g = pg.svg("g", { "data-topo-node": n.name });
    g.append(pg.svg("rect", { x: p.x - 62, y: p.y - 22, width: 124, height: 44, rx: 10, fill: pg.roleColor(n).startsWith("var")
      ? getComputedStyle(document.documentElement).getPropertyValue(pg.roleColor(n).slice(4, -1)) : pg.roleColor(n) }));
    g.append(pg.svg("text", { x: p.x, y: p.y + 8, "text-anchor": "middle", fill: "#fff", "font-size": 22, "font-weight": 800 }, n.name));
    svg.append(g);
  }
}

function bar(label, value, text) {
  const frag = document.createDocumentFragment();
  const i = pg.el("i", { class: value >= 90 ? "hot" : value >= 70 ? "warm" : "" });
  i.style.width = (value === null || value === undefined ? 0 : Math.min(100, Math.max(0, value))) + "%";
  frag.append(pg.el("span", {}, label), pg.el("div", { class: "bar" }, i), pg.el("span", { class: "v-" + label.toLowerCase() }, text));
  return frag;
}

function drawCards(c) {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  for (const n of c.nodes) {
    const s = n.stats || {};
    const color = pg.roleColor(n);
    const card = pg.el("div", { class: "card", "data-node": n.name, "data-role": n.role, "data-state": n.state,
                                style: "border-color:" + color });
    card.append(pg.el("div", { class: "head" }, pg.el("span", { class: "name" }, n.name),
                      pg.el("span", { class: "role", style: "background:" + color }, n.role)));
    const where = n.role === "replica" ? (n.upstream ? " from " + n.upstream : "") + (n.sync_state ? " · " + n.sync_state : "") : "";
    card.append(pg.el("div", { class: "state" }, pg.el("span", { class: "st" }, n.state), where,
                      n.timeline ? " · TL " + n.timeline : ""));
    card.append(pg.el("div", { class: "kv" },
      pg.el("div", {}, "lag", pg.el("b", { class: "lag" }, n.role === "replica" ? pg.bytes(n.lag_bytes) : "–")),
      pg.el("div", {}, "tps", pg.el("b", { class: "tps" }, pg.num(s.tps, 1))),
      pg.el("div", {}, "conns", pg.el("b", { class: "conns" }, s.connections ?? "–"))));
    const bars = pg.el("div", { class: "bars" });
    bars.append(bar("CPU", s.cpu_percent, pg.pct(s.cpu_percent)), bar("MEM", s.memory_percent, pg.pct(s.memory_percent)),
                bar("DISK", s.disk_used_percent, pg.pct(s.disk_used_percent)),
                bar("TEMP", s.temperature_celsius, s.temperature_celsius == null ? "–" : Math.round(s.temperature_celsius) + "°C"));
    card.append(bars);
    const tags = [n.nofailover ? "nofailover" : "", n.noloadbalance ? "noloadbalance" : ""].filter(Boolean);
    if (tags.length) card.append(pg.el("div", { class: "state tags" }, "tags: " + tags.join(", ")));
    // Parameters reloaded that wait for a restart (Patroni's "pending restart").
    if (n.pending_restart && n.pending_restart.length)
      card.append(pg.el("div", { class: "state pending", title: "pgfleet restart " + n.name },
                        "pending restart: " + n.pending_restart.join(", ")));
    if (n.last_error && !pg.healthy(n)) card.append(pg.el("div", { class: "state", style: "color:var(--down)" }, n.last_error));
    cards.append(card);
  }
}

function drawChart(id, legendId, key, format) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 90, bottom = 34, top = 10;
  ctx.clearRect(0, 0, W, H);
  const now = Date.now(), from = now - 15 * 60 * 1000;
  const t = pg.series.t;
  let max = 0;
  for (const cols of Object.values(pg.series.nodes)) for (const v of cols[key]) if (v !== null && v > max) max = v;
  max = max <= 0 ? 4 : Math.max(4, max * 1.15);
  ctx.strokeStyle = "#30363d"; ctx.fillStyle = "#8b949e"; ctx.font = "22px DejaVu Sans, sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + (H - top - bottom) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W, y); ctx.stroke();
    ctx.fillText(format(max * (4 - i) / 4), 4, y + 8);
  }
  for (let m = 15; m >= 0; m -= 5) {
    const x = left + (W - left) * (15 - m) / 15;
    ctx.fillText(m === 0 ? "now" : "-" + m + "m", Math.min(x, W - 50) - 10, H - 6);
  }
  const legend = document.getElementById(legendId);
  legend.replaceChildren();
  for (const [name, cols] of Object.entries(pg.series.nodes)) {
    ctx.strokeStyle = colorOf(name); ctx.lineWidth = 4; ctx.beginPath();
    let pen = false;
    for (let i = 0; i < t.length; i++) {
      const v = cols[key][i];
      if (v === null || v === undefined || t[i] < from) { pen = false; continue; }
      const x = left + (W - left) * (t[i] - from) / (now - from), y = top + (H - top - bottom) * (1 - v / max);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
    legend.append(pg.el("span", { style: "color:" + colorOf(name) }, "■ " + name));
  }
}

function drawSplit(c) {
  const row = document.getElementById("split-row"), note = document.getElementById("split-note");
  row.replaceChildren();
  const split = c.proxy && c.proxy.servers_by_node ? c.proxy.servers_by_node : null;
  if (!c.proxy) { note.textContent = "proxy disabled"; return; }
  const total = split ? Object.values(split).reduce((a, b) => a + b, 0) : 0;
  if (!split || total === 0) { note.textContent = "proxy " + c.proxy.state + " · no server connections yet"; return; }
  for (const [name, count] of Object.entries(split)) {
    row.append(pg.el("div", { style: "background:" + colorOf(name) + ";width:" + (100 * count / total) + "%",
                              "data-split-node": name }, name + " " + count));
  }
  note.textContent = "proxy " + c.proxy.state + " · " + total + " server connections";
}

function drawEvents(c) {
  const list = document.getElementById("event-list");
  const events = c.events || (c.history || []).map(h => ({ time_ms: Date.parse(h.time),
    kind: (h.reason || "").startsWith("switchover") ? "switchover" : "failover", text: h.reason || (h.from + " → " + h.to) }));
  list.replaceChildren();
  for (const e of events.slice().reverse().slice(0, 12)) {
    list.append(pg.el("li", { "data-kind": e.kind }, pg.el("time", {}, pg.clock(e.time_ms)),
                      pg.el("span", { class: "kind k-" + e.kind }, e.kind), e.text));
  }
  if (!events.length) list.append(pg.el("li", {}, "no events yet"));
}

function render(c, ok, why) {
  const conn = document.getElementById("conn");
  if (!ok) { conn.textContent = "DISCONNECTED: " + why; conn.className = "bad"; return; }
  conn.className = ""; conn.textContent = "updated " + pg.clock(Date.now());
  document.getElementById("cluster").textContent = c.cluster;
  const badge = document.getElementById("primary-badge");
  badge.id = "primary-badge"; badge.textContent = c.leader || "NONE"; badge.className = c.leader ? "" : "none";
  document.getElementById("sync").textContent = c.sync_mode;
  document.getElementById("paused").hidden = !c.paused;
  const backups = c.backups || { count: 0 };  // pgfleet backup (docs/backup.md)
  document.getElementById("backup").hidden = !backups.count;
  if (backups.count) document.getElementById("backup-age").textContent = pg.ago(backups.newest_finished_ms);
  document.body.dataset.leader = c.leader || "";
  drawTopology(c); drawCards(c); drawSplit(c); drawEvents(c);
  drawChart("tps-chart", "tps-legend", "tps", v => v.toFixed(v < 10 ? 1 : 0));
  drawChart("lag-chart", "lag-legend", "lag_bytes", v => pg.bytes(Math.round(v)));
}
pg.poll(render);
</script>
</body></html>
)html";

}  // namespace pgfleet::dashboard
