"""The call page's stylesheet and script, inline so the page is one file that fetches nothing.

The script does three things the server cannot, because they depend on the reader's screen:
it packs labels into rows so none covers another at the width the page has, shows the axis
ticks that fit, and moves a playhead along the timeline while a player plays (clicking the
timeline seeks). It reads only numbers from ``data-`` attributes; it never puts call text into
the page, so the escaping done on the server is the only escaping there is.
"""

from __future__ import annotations

from typing import Final

CSS: Final = """
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;padding:24px 28px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:#1f2937;background:#f3f4f6;overflow-wrap:break-word}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 10px}
code{font-size:12px;background:#f3f4f6;padding:0 3px;border-radius:3px}
.sub{color:#6b7280;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:120px}
.card .k{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600}
.card .v small{font-size:13px;font-weight:400;color:#6b7280}
.card.bad{border-color:#fca5a5;background:#fef2f2}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px;min-width:0}
.tl-tools{display:flex;align-items:center;gap:6px;margin:0 0 8px;font-size:12px;color:#6b7280}
.tl-tools button{font:inherit;min-width:32px;padding:2px 8px;border:1px solid #d1d5db;
border-radius:6px;background:#fff;color:#1f2937;cursor:pointer}
.tl-scroll{overflow-x:auto;overflow-y:hidden;position:relative}
.tl{--name-w:104px;--zoom:1;position:relative;min-width:100%;overflow:clip;
width:calc(var(--name-w) + (100% - var(--name-w)) * var(--zoom))}
.tl-lane{display:flex;border-bottom:1px solid #eef0f3}
.lane-name{flex:0 0 var(--name-w);position:sticky;left:0;z-index:3;background:#fff;
padding:2px 10px 2px 0;display:flex;flex-direction:column;justify-content:center;
align-items:flex-end;text-align:right;font-size:12px;color:#6b7280;line-height:1.2}
.lane-name .peak{font-size:11px;color:#9ca3af}
.lane-caller .lane-name{color:#2563eb;font-weight:600}
.lane-heard .lane-name{color:#0f766e;font-weight:600}
.lane-body{flex:1 1 auto;position:relative;min-width:0;min-height:20px}
.lane-body.wave{height:84px;background:#f8fafc}
.lane-body.axis{height:20px}
.wave-svg{display:block;width:100%;height:100%}
.wave-svg .mid{stroke-width:1;vector-effect:non-scaling-stroke}
.wave-svg.caller .mid{stroke:#bfdbfe}.wave-svg.heard .mid{stroke:#99f6e4}
.wave-svg.caller .env{fill:#bfdbfe}.wave-svg.caller .rms{fill:#2563eb}
.wave-svg.heard .env{fill:#99f6e4}.wave-svg.heard .rms{fill:#0f766e}
.tk{position:absolute;top:2px;font-size:11px;color:#6b7280;white-space:nowrap;
font-variant-numeric:tabular-nums}
.tl-overlay{position:absolute;top:0;bottom:0;left:var(--name-w);right:0;pointer-events:none;
z-index:2}
.gl{position:absolute;top:20px;bottom:0;border-left:1px solid rgba(148,163,184,.22)}
.vl{position:absolute;top:20px;bottom:0;margin-left:-1px;border-left:2px solid #dc2626}
.vl.clear{border-left:2px dashed #dc2626}
.vl.hangup,.vl.close{border-left-color:#1f2937}
.tl-end{position:absolute;top:0;bottom:0;right:0;border-right:1px dashed #9ca3af}
.playhead{position:absolute;top:0;bottom:0;margin-left:-1px;border-left:2px solid #111827;
z-index:4}
.playhead::before{content:"";position:absolute;top:0;left:-6px;border:5px solid transparent;
border-top:7px solid #111827}
.mk{position:absolute;display:block;cursor:help}
.mk.edge{top:0;bottom:0;margin-left:-1px;border-left:1px dashed rgba(37,99,235,.55);width:3px}
.mk.tri-down{top:0;margin-left:-5px;width:0;height:0;border:5px solid transparent;
border-top:7px solid #2563eb;border-bottom:0}
.mk.tri-up{bottom:0;margin-left:-5px;width:0;height:0;border:5px solid transparent;
border-bottom:7px solid #0f766e;border-top:0}
.pk{position:absolute;top:2px;z-index:3;display:block;font-size:12px;line-height:1.3;cursor:help;
max-width:min(340px,100%);white-space:normal;overflow-wrap:anywhere}
.pk .txt,.ev{background:rgba(255,255,255,.88);border-radius:2px}
.dense.text>.pk:not(.open){white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
max-width:min(200px,100%);cursor:pointer}
.dense.text>.pk:not(.open) .txt{display:inline}
.dense>.pk.open{z-index:5;box-shadow:0 1px 4px rgba(0,0,0,.25);cursor:pointer}
.pk.folded{width:3px;height:9px;margin-left:-1px;padding:0;border:0;border-radius:1px;
background:#94a3b8;overflow:hidden;cursor:pointer}
.pk.folded>*{display:none}
.pk .bar{display:block}
.pk:hover{z-index:4;filter:brightness(.85)}
.utt .bar{height:7px;min-width:2px;background:#bfdbfe;border-left:2px solid #2563eb;
border-radius:2px}
.utt .txt{display:block;color:#1e3a8a;padding:1px 0 0 3px}
.lat{font-weight:600;font-size:11px}
.lat .bar{height:6px;min-width:2px;border:2px solid currentColor;border-top:0}
.lat .txt{display:block;padding-left:2px;white-space:nowrap}
.good{color:#15803d}.warn{color:#b45309}.bad{color:#dc2626}
.say{border-left:2px solid #0f766e;padding-left:4px;color:#134e4a;background:rgba(255,255,255,.88)}
.tn{display:inline-block;min-width:1.5em;padding:0 4px;margin-right:4px;border-radius:4px;
background:#0f766e;color:#fff;font-size:10px;line-height:15px;text-align:center;font-weight:700;
font-style:normal;vertical-align:1px}
.cp{display:flex;align-items:center;height:7px}
.cp .bar{height:3px;min-width:2px;background:#7c3aed;border-radius:1px}
.cp.acked::after{content:"";width:5px;height:5px;margin-left:-2px;border-radius:50%;
background:#7c3aed}
.cp.cleared .bar{background:#ea580c}
.cp .x{color:#ea580c;font-size:12px;line-height:7px;font-weight:700}
.cp.pending .bar{background:repeating-linear-gradient(90deg,#7c3aed 0 3px,transparent 3px 6px)}
.ev{font-size:11px;font-weight:600;white-space:nowrap;padding:0 3px}
.ev.barge-in,.ev.clear{color:#dc2626}
.ev.hangup,.ev.close{color:#1f2937}
.ev.dtmf{color:#b45309}.ev.other{color:#6b7280}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin-top:12px;font-size:12px;color:#4b5563}
.lg{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;flex:none;position:static}
.sw.mk{position:relative;margin:0}
.sw-wave{width:18px;height:10px;border-radius:2px}
.sw-wave.caller{background:linear-gradient(#bfdbfe 0 25%,#2563eb 25% 75%,#bfdbfe 75%)}
.sw-wave.agent{background:linear-gradient(#99f6e4 0 25%,#0f766e 25% 75%,#99f6e4 75%)}
.sw-utt{width:18px;height:7px;background:#bfdbfe;border-left:2px solid #2563eb;border-radius:2px}
.sw-edge{width:0;height:14px;border-left:1px dashed #2563eb}
.sw-lat{width:18px;height:6px;border:2px solid #15803d;border-top:0}
.sw-say{width:4px;height:14px;background:#0f766e}
.sw-cp{width:18px;height:3px;background:#7c3aed}
.sw-cp.cleared{background:#ea580c}
.sw-cp.pending{background:repeating-linear-gradient(90deg,#7c3aed 0 3px,transparent 3px 6px)}
.sw-vl{width:0;height:14px;border-left:2px solid #dc2626}
.sw-vl.clear{border-left-style:dashed}
.sw-vl.hangup,.sw-vl.close{border-left-color:#1f2937}
.sw-ev{width:8px;height:8px;border-radius:50%;background:#b45309}
.sw-ev.other{background:#9ca3af}
.sw-end{width:0;height:14px;border-left:1px dashed #9ca3af}
.sw-playhead{width:0;height:14px;border-left:2px solid #111827}
.turn-note{font-size:12px;color:#4b5563;margin:10px 0 0}
.players{display:flex;flex-wrap:wrap;gap:8px 20px;margin-top:12px}
.player{display:flex;flex-direction:column;gap:2px;font-size:12px;color:#4b5563;min-width:0;
flex:1 1 260px;max-width:420px}
.player audio{width:100%;height:36px}
.note{font-size:12px;color:#6b7280;margin:8px 0 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;color:#374151}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.none{color:#9ca3af}
.yes{color:#dc2626;font-weight:600}
.chat{display:flex;flex-direction:column;gap:8px;max-width:900px}
.msg{padding:8px 12px;border-radius:10px;max-width:80%;white-space:pre-wrap}
.msg .role{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.05em;
color:#6b7280;margin-bottom:2px}
.msg .role .tn{text-transform:none}
.msg.caller{align-self:flex-start;background:#dbeafe}
.msg.agent{align-self:flex-end;background:#ccfbf1}
.msg.cut{border-right:3px solid #dc2626}
.msg.other{align-self:center;background:#f3f4f6;border:1px solid #e5e7eb}
.errors{background:#fef2f2;border:1px solid #fca5a5;border-radius:8px;padding:8px 14px;
margin-top:14px;color:#991b1b}
details{margin-top:14px}
summary{cursor:pointer;color:#374151;font-weight:600}
pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:12px}
@media (max-width:640px){
body{padding:12px 10px 32px}
.panel{padding:8px}
.card{min-width:0;flex:1 1 40%;padding:6px 10px}
.card .v{font-size:17px}
.tl{--name-w:0px}
.tl-lane{flex-direction:column}
.lane-name{flex:none;align-self:flex-start;flex-direction:row;align-items:baseline;gap:6px;
padding:3px 4px 1px 0;font-size:11px;background:rgba(255,255,255,.92)}
.lane-axis .lane-name{display:none}
.lane-body.wave{height:60px}
.msg{max-width:92%}
table.turns,table.turns tbody,table.turns tr,table.turns td{display:block}
table.turns thead{display:none}
table.turns tr{margin-bottom:8px;border:1px solid #e5e7eb;border-radius:6px;background:#fff}
table.turns td{display:grid;grid-template-columns:7.5em 1fr;gap:8px;border:0;
border-bottom:1px solid #f3f4f6;text-align:left;white-space:normal;padding:4px 8px}
table.turns td::before{content:attr(data-label);font-size:11px;font-weight:400;color:#6b7280;
text-transform:uppercase;letter-spacing:.04em;padding-top:1px}
}
"""

SCRIPT: Final = """
(() => {
  "use strict";
  const tl = document.getElementById("tl");
  if (!tl) return;
  const scroller = document.getElementById("tl-scroll");
  const dur = parseFloat(tl.dataset.duration) || 1;
  const base = parseFloat(tl.dataset.tickBase) || 1;
  const steps = tl.dataset.tickSteps.split(" ").map(Number)
    .filter((s) => s >= base && Math.abs(s / base - Math.round(s / base)) < 1e-6);
  const GAP_X = 8, GAP_Y = 3, TICK_PX = 64, MAX_ZOOM = 64, DENSE_PX = 240;
  const lanes = Array.from(tl.querySelectorAll(".lane-body.packed"));
  const ticks = Array.from(tl.querySelectorAll("[data-tick]"));
  const plot = () => tl.querySelector(".lane-body").getBoundingClientRect().width;
  const denseNote = document.getElementById("dense-note");
  let zoom = 1, laidOut = -1;

  // A lane taller than its budget (half the window for text) at this width, as a long call seen
  // whole makes it, turns dense: text labels take one line each, and labels that still find no
  // row within the budget fold to a tick. Hover shows any label's full text; a click opens it
  // (zooming in unfolds them all).
  function pack(body, w) {
    body.classList.remove("dense");
    const budget = Math.max(DENSE_PX, window.innerHeight / 2);
    const limit = body.classList.contains("text") ? budget : budget / 2;
    if (packOnce(body, w, Infinity) > limit) {
      body.classList.add("dense");
      packOnce(body, w, limit);
    }
    denseNote.hidden = !lanes.some((lane) => lane.querySelector(".folded"));
  }

  function packOnce(body, w, limit) {
    const items = Array.from(body.children).filter((el) => el.classList.contains("pk"));
    for (const el of items) {
      el.classList.remove("folded");
      el.style.left = "0px";
      el.style.top = "0px";
      el.style.width = "";
      const bar = el.querySelector(":scope > .bar");
      if (bar && el.dataset.t1 !== undefined) {
        bar.style.width = Math.max(2, (el.dataset.t1 - el.dataset.t0) / dur * w) + "px";
      }
    }
    const sizes = items.map((el) => {
      const box = el.getBoundingClientRect();
      return [Math.ceil(box.width), Math.ceil(box.height)];
    });
    const placed = [];
    let bottom = 0;
    const spots = items.map((el, i) => {
      const [bw, bh] = sizes[i];
      const x = el.dataset.t0 / dur * w;
      let left = el.classList.contains("end") ? x - bw : x;
      left = Math.max(0, Math.min(left, w - bw));
      const near = placed.filter((b) => b.l < left + bw + GAP_X && left < b.r + GAP_X);
      let top = 2, moved = true;
      while (moved) {
        moved = false;
        for (const b of near) {
          if (top < b.b + GAP_Y && b.t < top + bh + GAP_Y) { top = b.b + GAP_Y; moved = true; }
        }
      }
      if (top + bh > limit && !el.classList.contains("open")) return null;
      placed.push({ l: left, r: left + bw, t: top, b: top + bh });
      bottom = Math.max(bottom, top + bh);
      return [left, top];
    });
    const folded = spots.some((spot) => spot === null);
    const strip = Math.max(bottom, Math.min(limit, bottom)) + 4;
    items.forEach((el, i) => {
      if (spots[i] === null) {
        el.classList.add("folded");
        el.style.left = (el.dataset.t0 / dur * w) + "px";
        el.style.top = strip + "px";
        return;
      }
      // The width it was measured at: placed further right it would shrink and wrap anew.
      el.style.width = sizes[i][0] + "px";
      el.style.left = spots[i][0] + "px";
      el.style.top = spots[i][1] + "px";
    });
    body.style.height = Math.ceil(folded ? strip + 12 : bottom + 4) + "px";
    return bottom;
  }

  function axis(w) {
    const step = steps.find((s) => s / dur * w >= TICK_PX) || steps[steps.length - 1];
    for (const el of ticks) {
      const t = parseFloat(el.dataset.tick);
      el.hidden = Math.abs(t / step - Math.round(t / step)) > 1e-6;
    }
    const labels = ticks.filter((el) => el.classList.contains("tk") && !el.hidden);
    const widths = labels.map((el) => el.offsetWidth);
    labels.forEach((el, i) => {
      const x = el.dataset.tick / dur * w - widths[i] / 2;
      el.style.left = Math.max(0, Math.min(x, w - widths[i])) + "px";
    });
  }

  function layout(force) {
    const w = plot();
    if (!force && Math.abs(w - laidOut) < 0.5) return;
    laidOut = w;
    axis(w);
    for (const body of lanes) pack(body, w);
  }

  new ResizeObserver(() => layout(false)).observe(scroller);
  layout(true);
  if (document.fonts) document.fonts.ready.then(() => layout(true));

  const tools = document.getElementById("tl-tools");
  const level = document.getElementById("zoom-level");
  tools.hidden = false;
  tools.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-zoom]");
    if (!button) return;
    const before = tl.getBoundingClientRect().width;
    const centre = (scroller.scrollLeft + scroller.clientWidth / 2) / before;
    const how = button.dataset.zoom;
    zoom = how === "in" ? Math.min(zoom * 2, MAX_ZOOM) : how === "out" ? Math.max(zoom / 2, 1) : 1;
    tl.style.setProperty("--zoom", String(zoom));
    level.textContent = zoom === 1 ? "whole call" : "\\u00d7" + zoom;
    layout(true);
    scroller.scrollLeft = centre * tl.getBoundingClientRect().width - scroller.clientWidth / 2;
  });

  const players = Array.from(document.querySelectorAll("audio.track"));
  const head = document.getElementById("playhead");
  let active = players[0] || null, frame = 0;
  const draw = () => {
    head.hidden = false;
    head.style.left = Math.min(100, active.currentTime / dur * 100) + "%";
  };
  const follow = () => {
    draw();
    frame = active.paused ? 0 : requestAnimationFrame(follow);
  };
  if (head) {
    for (const audio of players) {
      audio.addEventListener("play", () => {
        for (const other of players) if (other !== audio) other.pause();
        active = audio;
        if (!frame) frame = requestAnimationFrame(follow);
      });
      for (const name of ["timeupdate", "seeked"]) {
        audio.addEventListener(name, () => { if (audio === active) draw(); });
      }
    }
  }
  tl.addEventListener("click", (ev) => {
    const label = ev.target.closest(".dense > .pk");
    if (label) {
      label.classList.toggle("open");
      pack(label.parentElement, plot());
      return;
    }
    if (!active || !head || ev.target.closest(".pk, .lane-name")) return;
    const box = tl.querySelector(".lane-body").getBoundingClientRect();
    const at = (ev.clientX - box.left) / box.width;
    if (at < 0 || at > 1) return;
    active.currentTime = at * dur;
    draw();
  });
})();
"""
