// The /display page: the essentials in exactly 240x240 CSS pixels, for a small screen next to
// the machines (the ESP32 + 240x240 IPS display of the Raspberry Pi rack, or a browser kiosk).
#include "dashboard/assets.hpp"

namespace pgfleet::dashboard {

const char* const kDisplayHtml = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=240, height=240, initial-scale=1">
<title>pgfleet display</title>
<style>
:root { --primary:#2ea043; --replica:#1f6feb; --warn:#d29922; --down:#f85149; }
html, body { width:240px; height:240px; margin:0; overflow:hidden; background:#000; color:#fff;
             font:15px/1.2 "DejaVu Sans", sans-serif; }
#frame { width:240px; height:240px; display:flex; flex-direction:column; }
#head { height:46px; background:var(--primary); display:flex; align-items:center; justify-content:space-between; padding:0 8px; }
#head.none { background:var(--down); }
#head .lbl { font-size:11px; font-weight:700; opacity:.85; }
#primary { font-size:26px; font-weight:800; }
#nodes { flex:1; padding:3px 6px; }
.n { display:flex; align-items:center; height:36px; gap:6px; }
#nodes.dense .n { height:25px; }
#nodes.dense .n .name { font-size:16px; }
.n .dot { width:16px; height:16px; border-radius:3px; flex:none; }
.n .name { font-size:21px; font-weight:800; width:88px; overflow:hidden; white-space:nowrap; }
.n .role { font-size:12px; font-weight:700; width:30px; }
.n .val { margin-left:auto; font-size:16px; font-variant-numeric:tabular-nums; }
#foot { height:40px; border-top:2px solid #333; padding:2px 6px; font-size:12px; }
#foot .tps { font-size:16px; font-weight:800; }
#last { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; color:#bbb; }
#frame.bad #head { background:#555; }
</style></head>
<body><div id="frame">
  <div id="head" class="none"><span class="lbl">PRIMARY</span><span id="primary">–</span></div>
  <div id="nodes"></div>
  <div id="foot"><div><span class="tps" id="tps">–</span> tps · <span id="state">connecting</span></div><div id="last"></div></div>
</div>
<script src="/dashboard/common.js"></script>
<script>
"use strict";
function render(c, ok, why) {
  const frame = document.getElementById("frame");
  if (!ok) { frame.className = "bad"; document.getElementById("state").textContent = "NO DATA"; return; }
  frame.className = "";
  const head = document.getElementById("head");
  head.className = c.leader ? "" : "none";
  document.getElementById("primary").textContent = c.leader || "NONE";
  document.body.dataset.leader = c.leader || "";
  const list = document.getElementById("nodes");
  list.replaceChildren();
  list.className = c.nodes.length > 4 ? "dense" : "";
  let tps = 0, known = false, healthy = 0;
  for (const n of c.nodes.slice(0, 6)) {
    const s = n.stats || {};
    if (s.tps != null) { tps += s.tps; known = true; }
    if (pg.healthy(n)) healthy++;
    const val = !pg.healthy(n) ? n.state.toUpperCase()
              : n.role === "replica" ? pg.bytes(n.lag_bytes)
              : (s.cpu_percent != null ? "cpu " + pg.pct(s.cpu_percent) : "");
    list.append(pg.el("div", { class: "n", "data-node": n.name, "data-role": n.role },
      pg.el("span", { class: "dot", style: "background:" + pg.roleColor(n) }),
      pg.el("span", { class: "name" }, n.name),
      pg.el("span", { class: "role" }, n.role === "primary" ? "PRI" : n.role === "replica" ? "REP" : "?"),
      pg.el("span", { class: "val", style: pg.healthy(n) ? "" : "color:var(--down);font-weight:800" }, val)));
  }
  document.getElementById("tps").textContent = known ? tps.toFixed(0) : "–";
  document.getElementById("state").textContent = healthy + "/" + c.nodes.length + " up" + (c.paused ? " · PAUSED" : "");
  const ev = (c.events || []).slice(-1)[0];
  document.getElementById("last").textContent = ev ? pg.clock(ev.time_ms) + " " + ev.text : "";
}
pg.poll(render);
</script>
</body></html>
)html";

}  // namespace pgfleet::dashboard
