// The script shared by the dashboard pages: polls /api/cluster every second and formats values.
#include "dashboard/assets.hpp"

namespace pgfleet::dashboard {

const char* const kCommonJs = R"js(
"use strict";
// pgfleet dashboard: polls /api/cluster once a second; `series` points arrive incrementally.
const pg = {
  roleColor(node) {
    if (node.state === "crashed" || node.state === "stopped" || node.state === "unsupervised") return "var(--down)";
    if (node.state === "starting" || node.state === "stopping") return "var(--warn)";
    return node.role === "primary" ? "var(--primary)" : node.role === "replica" ? "var(--replica)" : "var(--warn)";
  },
  healthy(node) { return node.state === "running" || node.state === "streaming"; },
  bytes(b) {
    if (b === null || b === undefined) return "–";
    if (b < 1024) return b + " B";
    if (b < 1048576) return (b / 1024).toFixed(1) + " kB";
    if (b < 1073741824) return (b / 1048576).toFixed(1) + " MB";
    return (b / 1073741824).toFixed(1) + " GB";
  },
  num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); },
  pct(v) { return v === null || v === undefined ? "–" : Math.round(v) + "%"; },
  clock(ms) { const d = new Date(ms); return d.toTimeString().slice(0, 8); },
  ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago"
         : s < 172800 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " days ago";
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  },
  svg(tag, attrs, text) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  },
  // Time series kept in the page: {t: [ms], nodes: {name: {tps: [], lag_bytes: [], lag_seconds: []}}}.
  series: { t: [], nodes: {} },
  lastPoint: 0,
  mergeSeries(s) {
    if (!s || !s.t) return;
    for (let i = 0; i < s.t.length; i++) {
      if (s.t[i] <= this.lastPoint) continue;
      const at = this.series.t.length;
      this.series.t.push(s.t[i]);
      for (const [name, cols] of Object.entries(s.nodes || {})) {
        const mine = this.series.nodes[name] || (this.series.nodes[name] = { tps: [], lag_bytes: [], lag_seconds: [] });
        for (const k of ["tps", "lag_bytes", "lag_seconds"]) {
          while (mine[k].length < at) mine[k].push(null);
          mine[k].push(cols[k] ? cols[k][i] : null);
        }
      }
      this.lastPoint = s.t[i];
    }
    const cutoff = Date.now() - 15 * 60 * 1000;
    let drop = 0;
    while (drop < this.series.t.length && this.series.t[drop] < cutoff) drop++;
    if (drop > 0) {
      this.series.t.splice(0, drop);
      for (const cols of Object.values(this.series.nodes)) for (const k in cols) cols[k].splice(0, drop);
    }
  },
  // Calls render(cluster, ok) after every poll; failed polls mark the page as disconnected.
  poll(render) {
    const tick = async () => {
      const started = Date.now();
      try {
        const ctl = new AbortController();
        const timer = setTimeout(() => ctl.abort(), 2500);
        const r = await fetch("/api/cluster?since=" + this.lastPoint, { cache: "no-store", signal: ctl.signal });
        clearTimeout(timer);
        if (!r.ok) throw new Error("HTTP " + r.status);
        const c = await r.json();
        this.mergeSeries(c.series);
        render(c, true);
      } catch (e) {
        render(null, false, String(e));
      }
      setTimeout(tick, Math.max(100, 1000 - (Date.now() - started)));
    };
    tick();
  },
};
)js";

}  // namespace pgfleet::dashboard
