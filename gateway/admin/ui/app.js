// Strait topology page: one EventSource on /ui/events; every "snapshot"
// redraws the page, every "refusal" is prepended to the list. No
// framework, nothing fetched from anywhere else.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const MAX_REFUSALS = 200;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const k of kids) e.append(k);
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}

function ago(t) {
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return s.toFixed(0) + " s ago";
  if (s < 3600) return (s / 60).toFixed(0) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}

function setConn(state, text) {
  const c = document.getElementById("conn");
  c.dataset.state = state;
  document.getElementById("conn-text").textContent = text;
}

// drawTopology lays the regions out side by side, each with its clusters
// grouped by cloud, and the tunnels of this gateway as curves.
function drawTopology(st) {
  const box = document.getElementById("topology");
  const width = Math.max(600, box.clientWidth || 900);
  const regions = new Map();
  for (const c of st.clusters || []) {
    if (!regions.has(c.region)) regions.set(c.region, []);
    regions.get(c.region).push(c);
  }
  const names = [...regions.keys()].sort();
  const gap = 16, pad = 12, head = 30, ch = 58, cg = 10;
  const colW = names.length ? (width - gap * (names.length + 1)) / names.length : width;
  let tallest = 0;
  for (const n of names) tallest = Math.max(tallest, regions.get(n).length);
  const height = Math.max(160, head + pad + tallest * (ch + cg) + pad + 20);
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.setAttribute("height", height);
  box.replaceChildren();
  const centers = new Map();
  const lines = svg("g", {class: "tunnels"}), labels = svg("g", {class: "tunnel-labels"});
  const groups = svg("g", {class: "regions"});
  names.forEach((name, i) => {
    const x = gap + i * (colW + gap);
    const cs = regions.get(name).slice().sort((a, b) => (a.cloud || "").localeCompare(b.cloud || "") || a.cluster.localeCompare(b.cluster));
    const g = svg("g", {class: "region", "data-region": name});
    g.append(svg("rect", {x, y: 4, width: colW, height: height - 8, rx: 10, fill: "#eef2f8", stroke: "#cfd8e6"}));
    g.append(svg("text", {x: x + pad, y: 24, "font-size": 14, "font-weight": 600, fill: "#334155"}, "region " + name));
    cs.forEach((c, j) => {
      const y = head + pad + j * (ch + cg);
      const up = c.reachable || c.cluster === st.cluster;
      const self = c.cluster === st.cluster;
      const cg_ = svg("g", {class: "cluster", "data-cluster": c.cluster, "data-region": c.region, "data-cloud": c.cloud || "", "data-state": up ? "up" : "down"});
      cg_.append(svg("rect", {x: x + pad, y, width: colW - 2 * pad, height: ch, rx: 8,
        fill: up ? (self ? "#dbeafe" : "#ffffff") : "#fee2e2", stroke: up ? (self ? "#2563eb" : "#1f9d55") : "#d64545", "stroke-width": self ? 2.5 : 1.5}));
      cg_.append(svg("circle", {cx: x + pad + 14, cy: y + 18, r: 5, fill: up ? "#1f9d55" : "#d64545"}));
      cg_.append(svg("text", {x: x + pad + 26, y: y + 22, "font-size": 14, "font-weight": 600, fill: "#111827"}, c.cluster + (self ? " (this gateway)" : "")));
      const svcs = (c.services || []).length;
      cg_.append(svg("text", {x: x + pad + 14, y: y + 42, "font-size": 12, fill: up ? "#475569" : "#7f1d1d"},
        `${c.cloud || "no cloud"} · ${c.zone || "-"} · ${svcs} service${svcs === 1 ? "" : "s"}${up ? "" : " · DOWN"}`));
      centers.set(c.cluster, {x: x + colW / 2, y: y + ch / 2, col: i});
      g.append(cg_);
    });
    groups.append(g);
  });
  const byAddr = new Map((st.members || []).map(m => [m.gateway, m.cluster]));
  const from = centers.get(st.cluster);
  for (const t of st.tunnels || []) {
    const to = centers.get(byAddr.get(t.addr));
    if (!from || !to || to === from) continue;
    const mx = (from.x + to.x) / 2, my = (from.y + to.y) / 2;
    const bow = from.col === to.col ? colW * 0.45 : -30;
    const cx = mx + (from.col === to.col ? bow : 0), cy = my + (from.col === to.col ? 0 : bow);
    const colour = t.state === "open" ? "#2563eb" : t.state === "down" ? "#d64545" : "#c27c0e";
    const p = svg("path", {d: `M ${from.x} ${from.y} Q ${cx} ${cy} ${to.x} ${to.y}`, fill: "none", stroke: colour, "stroke-width": 2,
      "stroke-opacity": 0.7, class: "tunnel", "data-state": t.state});
    if (t.state !== "open") p.setAttribute("stroke-dasharray", "6 4");
    lines.append(p);
    const lx = (from.x + 2 * cx + to.x) / 4, ly = (from.y + 2 * cy + to.y) / 4;
    const label = t.state === "open" ? `${t.rttMs.toFixed(1)} ms` : t.state;
    labels.append(svg("rect", {x: lx - 28, y: ly - 9, width: 56, height: 16, rx: 4, fill: "#ffffff", stroke: colour}));
    labels.append(svg("text", {x: lx, y: ly + 3, "font-size": 11, "text-anchor": "middle", fill: colour}, label));
  }
  // Under the (opaque) clusters, so a line runs from edge to edge; the
  // round trips on top.
  box.append(lines, groups, labels);
  const down = (st.clusters || []).filter(c => !c.reachable && c.cluster !== st.cluster).length;
  document.getElementById("summary").textContent =
    `${(st.clusters || []).length} clusters in ${names.length} regions` + (down ? `, ${down} down` : ", all up");
}

function drawState(s) {
  const st = s.status, dl = document.getElementById("state");
  const rows = [];
  const add = (k, v, cls) => rows.push(el("dt", {}, k), el("dd", cls ? {class: cls} : {}, v));
  if (st.state) {
    const h = st.state;
    add("role", h.role + (h.voter ? " (voter)" : " (non-voter)"));
    add("leader", h.leader || "none known", h.leader ? "" : "bad");
    add("index", String(h.index) + (h.applied !== h.index ? ` (applied ${h.applied})` : ""));
    add("staleness", h.stale ? "stale since " + ago(h.staleSince) : "fresh: in contact with the leader", h.stale ? "bad" : "ok");
  } else {
    add("routing state", "not enabled on this gateway");
  }
  add("policy", s.inForce ? `${s.policy.name || "(unnamed)"} version ${s.policy.version}` : "none in force: every flow is refused", s.inForce ? "" : "bad");
  if (s.policy.digest) add("digest", s.policy.digest.slice(0, 16));
  if (s.policy.source) add("source", s.policy.source);
  for (const w of st.warnings || []) add("warning", w, "warn");
  dl.replaceChildren(...rows);
}

function drawTunnels(st) {
  const byAddr = new Map((st.members || []).map(m => [m.gateway, m.cluster]));
  const rows = (st.tunnels || []).map(t => el("tr", {"data-state": t.state},
    el("td", {}, byAddr.get(t.addr) || t.peer || "?"), el("td", {}, t.addr),
    el("td", {class: "state-" + t.state}, t.state), el("td", {class: "num"}, String(t.streams)),
    el("td", {class: "num"}, t.state === "open" ? t.rttMs.toFixed(2) + " ms" : "-")));
  document.querySelector("#tunnels tbody").replaceChildren(...rows);
}

function spark(counts) {
  const w = 200, h = 26, n = counts.length;
  const peak = Math.max(1, ...counts);
  const pts = counts.map((c, i) => `${(i * w / (n - 1)).toFixed(1)},${(h - 2 - (c / peak) * (h - 4)).toFixed(1)}`).join(" ");
  return svg("svg", {width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark"},
    svg("polyline", {points: pts, fill: "none", stroke: "#2563eb", "stroke-width": 1.5}));
}

function drawTraffic(tr) {
  const series = tr.series || [];
  const rows = series.map(s => {
    const last10 = s.counts.slice(-10).reduce((a, b) => a + b, 0);
    return el("tr", {"data-service": s.service, "data-destination": s.destination, "data-class": s.class},
      el("td", {}, s.service), el("td", {}, s.destination),
      el("td", {}, el("span", {class: "chip " + (s.class === "none" ? "none" : "cls")}, s.class)),
      el("td", {}, spark(s.counts)), el("td", {class: "num"}, String(last10)), el("td", {class: "num"}, String(s.total)));
  });
  document.querySelector("#traffic tbody").replaceChildren(...rows);
  document.getElementById("traffic-empty").hidden = rows.length > 0;
}

function drawEjected(st) {
  const items = (st.ejected || []).map(e => el("li", {"data-cluster": e.cluster},
    el("div", {}, `${e.service} in ${e.cluster}: ${e.endpoint ? "endpoint " + e.endpoint : "gateway " + e.gateway}`),
    el("div", {class: "meta"}, `${e.failures} failures, ejection ${e.ejections} in a row, until ${new Date(e.until).toLocaleTimeString()}`)));
  document.getElementById("ejected").replaceChildren(...items);
  document.getElementById("ejected-empty").hidden = items.length > 0;
}

function addRefusal(r, fresh) {
  const list = document.getElementById("refusals");
  const f = r.flow || {};
  const what = `${r.direction || ""} ${r.entry || ""}`.trim();
  const classes = (f.classes || []).join(", ");
  const li = el("li", {class: fresh ? "fresh" : "", "data-service": f.service || "", "data-kind": r.kind, "data-status": String(r.status || "")},
    el("div", {}, `${r.status || ""} ${f.service || "?"}${f.port ? ":" + f.port : ""} from ${f.sourceCluster || "?"} (${f.sourceRegion || "?"})`),
    el("div", {class: "meta"}, `${new Date(r.time).toLocaleTimeString()} · ${r.kind} · ${what}` + ((classes || r.class) ? ` · class ${classes || r.class}` : "") +
      (r.rule ? ` · rule ${r.rule}` : "")),
    el("div", {class: "meta"}, r.reason || r.error || ""));
  list.prepend(li);
  while (list.children.length > MAX_REFUSALS) list.lastChild.remove();
  document.getElementById("refusals-empty").hidden = true;
}

function onSnapshot(s) {
  const st = s.status;
  document.getElementById("self").textContent = `${st.cluster} · ${st.region}${st.cloud ? " · " + st.cloud : ""} · ${st.node}`;
  document.title = `Strait · ${st.cluster}`;
  drawTopology(st);
  drawState(s);
  drawTunnels(st);
  drawTraffic(s.traffic);
  drawEjected(st);
  setConn("live", "live · " + new Date(s.time).toLocaleTimeString());
}

function connect() {
  const es = new EventSource("events");
  let seen = false;
  es.addEventListener("snapshot", ev => {
    if (!seen) {
      // The latest refusals follow the first snapshot of every
      // connection, a reconnection too: start the list again.
      document.getElementById("refusals").replaceChildren();
    }
    seen = true;
    onSnapshot(JSON.parse(ev.data));
  });
  es.addEventListener("open", () => { seen = false; });
  es.addEventListener("refusal", ev => addRefusal(JSON.parse(ev.data), seen));
  es.onerror = () => setConn("lost", "connection lost, retrying");
}

connect();
