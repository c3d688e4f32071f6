// The overlay-network page: polls GET /v1/topology on the daemon that served it and draws
// the AS graph as SVG with a fixed layout (controllers on a circle in AS order, each stub
// AS outside, next to the controller with the lowest AS number that links to it), this
// controller's best path to the selected destination, and the tables. No libraries;
// nothing is loaded from elsewhere. Every text from the network is set with textContent.
//
// URL fragment options: #dest=ASN selects a destination, #token=TOKEN is sent as the
// bearer token when the daemon has rpc_token (the fragment never leaves the browser).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
const WIDTH = 760;
const HEIGHT = 560;
const CONTROLLER_R = 30;
const STUB_R = 24;

const options = new URLSearchParams(location.hash.slice(1));
let selected = options.has("dest") ? Number(options.get("dest")) : null;
let graph = null;

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19) + " UTC";
}

function short(fingerprint) {
  return fingerprint.slice(0, 12) + "…";
}

function setState(kind, text) {
  const p = document.getElementById("state");
  p.dataset.state = kind;
  p.textContent = text;
}

// Fills a table's body with one row per item, or one "none" row.
function fill(id, items, columns, decorate) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (items.length === 0) {
    const td = body.insertRow().insertCell();
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    td.className = "empty";
    td.textContent = "none";
    return;
  }
  for (const item of items) {
    const row = body.insertRow();
    for (const [value, cls] of columns(item)) cell(row, value, cls);
    if (decorate) decorate(row, item);
  }
}

// Positions by AS number: controllers on an inner ellipse, stubs fanned out on an outer
// one beyond the controller that links to them (the lowest such AS number).
function layout(g) {
  const controllers = g.ases.filter((a) => a.kind === "controller");
  const stubs = g.ases.filter((a) => a.kind !== "controller");
  const n = controllers.length;
  const inner = n <= 1 ? 0 : 0.55;
  const at = (scale, angle) => ({
    x: WIDTH / 2 + scale * (WIDTH / 2 - 50) * Math.cos(angle),
    y: HEIGHT / 2 + scale * (HEIGHT / 2 - 40) * Math.sin(angle),
    angle,
  });
  const pos = new Map();
  const start = -Math.PI / 2 + Math.PI / Math.max(n, 1);
  controllers.forEach((a, i) => pos.set(a.asn, at(inner, start + (2 * Math.PI * i) / n)));

  const groups = new Map();
  for (const s of stubs) {
    const owners = g.links.filter((l) => l.to === s.asn && pos.has(l.from)).map((l) => l.from);
    const owner = owners.length ? Math.min(...owners) : null;
    if (!groups.has(owner)) groups.set(owner, []);
    groups.get(owner).push(s);
  }
  for (const [owner, list] of groups) {
    const base = owner === null ? Math.PI / 2 : pos.get(owner).angle;
    const sector = n <= 1 || owner === null ? 2 * Math.PI : (2 * Math.PI) / n;
    const step = Math.min(0.42, (sector * 0.8) / list.length);
    list.forEach((s, j) => pos.set(s.asn, at(1, base + (j - (list.length - 1) / 2) * step)));
  }
  return pos;
}

// Wide enough for the AS number.
function radius(a) {
  return Math.max(a.kind === "controller" ? CONTROLLER_R : STUB_R, 4.3 * `AS${a.asn}`.length + 6);
}

// The route drawn: the selected destination's, else the one with the most hops (the
// lowest AS number among equals).
function chosenRoute(g) {
  const chosen = g.routes.find((r) => r.destination === selected);
  if (chosen) return chosen;
  let best = null;
  for (const r of g.routes) if (!best || r.hops > best.hops) best = r;
  return best;
}

function select(asn) {
  selected = asn;
  options.set("dest", String(asn));
  history.replaceState(null, "", "#" + options.toString());
  if (graph) render(graph);
}

function drawGraph(g, route) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const defs = el("defs");
  for (const id of ["arrow", "arrow-hl"]) {
    const marker = el("marker", {
      id,
      viewBox: "0 0 10 10",
      refX: "9",
      refY: "5",
      markerWidth: "7",
      markerHeight: "7",
      orient: "auto-start-reverse",
    });
    marker.append(el("path", { d: "M0,0 L10,5 L0,10 z" }));
    defs.append(marker);
  }
  svg.append(defs);

  const pos = layout(g);
  const byAsn = new Map(g.ases.map((a) => [a.asn, a]));
  const onPath = new Set();
  if (route) {
    for (let i = 0; i + 1 < route.path.length; i++) onPath.add(`${route.path[i]}>${route.path[i + 1]}`);
    svg.dataset.path = route.path.join(" ");
    svg.dataset.destination = String(route.destination);
  } else {
    delete svg.dataset.path;
    delete svg.dataset.destination;
  }
  const pairs = new Set(g.links.map((l) => `${l.from}>${l.to}`));

  const links = el("g", { class: "links" });
  const labels = el("g", { class: "labels" });
  // The highlighted path last, on top.
  const highlightedLast = (l) => (onPath.has(`${l.from}>${l.to}`) ? 1 : 0);
  for (const l of [...g.links].sort((x, y) => highlightedLast(x) - highlightedLast(y))) {
    const a = pos.get(l.from);
    const b = pos.get(l.to);
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const length = Math.hypot(dx, dy) || 1;
    // Both directions advertised: bend each to its own side.
    const bend = pairs.has(`${l.to}>${l.from}`) ? 40 : 0;
    const normal = { x: -dy / length, y: dx / length };
    const c = { x: (a.x + b.x) / 2 + normal.x * bend, y: (a.y + b.y) / 2 + normal.y * bend };
    const from = toward(a, c, radius(byAsn.get(l.from)));
    const to = toward(b, c, radius(byAsn.get(l.to)) + 2);
    const hl = onPath.has(`${l.from}>${l.to}`);
    const attrs = { class: hl ? "link hl" : "link", "data-from": String(l.from), "data-to": String(l.to) };
    const line = el("g", attrs);
    line.append(
      el("path", {
        d: `M${from.x.toFixed(1)},${from.y.toFixed(1)} Q${c.x.toFixed(1)},${c.y.toFixed(1)} ${to.x.toFixed(1)},${to.y.toFixed(1)}`,
        "marker-end": hl ? "url(#arrow-hl)" : "url(#arrow)",
      }),
    );
    links.append(line);
    // The label sits beside the curve's midpoint, on the side its normal points to (the
    // outer side when it is bent): 7 px away sideways, 12 px vertically (text height),
    // baseline 4 px below the centre.
    const mx = 0.25 * a.x + 0.5 * c.x + 0.25 * b.x + normal.x * 7;
    const my = 0.25 * a.y + 0.5 * c.y + 0.25 * b.y + normal.y * 12 + 4;
    const anchor = Math.abs(normal.x) < 0.35 ? "middle" : normal.x > 0 ? "start" : "end";
    const label = el("g", { class: hl ? "label hl" : "label" });
    label.append(
      el("text", { x: mx.toFixed(1), y: my.toFixed(1), "text-anchor": anchor }, `${l.cost} / ${l.capacity}`),
    );
    labels.append(label);
  }
  svg.append(links, labels);

  const onRoute = new Set(route ? route.path : []);
  const nodes = el("g", { class: "ases" });
  for (const a of g.ases) {
    const p = pos.get(a.asn);
    const classes = ["as", a.kind];
    if (a.own) classes.push("own");
    if (a.peer) classes.push("peer");
    if (!a.reachable) classes.push("unreachable");
    if (onRoute.has(a.asn)) classes.push("on-path");
    if (route && route.destination === a.asn) classes.push("dest");
    const group = el("g", {
      class: classes.join(" "),
      "data-asn": String(a.asn),
      transform: `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`,
    });
    if (a.peer) group.append(el("circle", { class: "ring", r: String(radius(a) + 5) }));
    group.append(el("circle", { class: "body", r: String(radius(a)) }));
    group.append(el("text", { y: a.kind === "controller" ? "-2" : "4" }, `AS${a.asn}`));
    if (a.kind === "controller") {
      group.append(el("text", { class: "sub", y: "13" }, `RC${a.controller}`));
    }
    group.append(el("title", {}, describe(a)));
    if (!a.own) group.addEventListener("click", () => select(a.asn));
    nodes.append(group);
  }
  svg.append(nodes);
}

// The point at `distance` from `p` toward `q`.
function toward(p, q, distance) {
  const dx = q.x - p.x;
  const dy = q.y - p.y;
  const length = Math.hypot(dx, dy) || 1;
  return { x: p.x + (dx / length) * distance, y: p.y + (dy / length) * distance };
}

function describe(a) {
  const what = a.kind === "controller" ? `controller RC${a.controller}` : "stub AS, destination only";
  return `AS${a.asn}: ${what}${a.own ? ", this controller" : ""}${a.peer ? ", direct peer" : ""}${a.reachable ? "" : ", unreachable"}`;
}

function render(g) {
  const route = chosenRoute(g);
  document.getElementById("who").textContent = `RC${g.node} · AS${g.asn} · key ${short(g.fingerprint)}`;
  document.title = `overlay-network · RC${g.node} (AS${g.asn})`;
  drawGraph(g, route);

  const path = document.getElementById("path");
  path.textContent = route
    ? `Best path to AS${route.destination}: ${route.path.map((a) => "AS" + a).join(" → ")} · cost ${route.cost} · ${route.hops} hop${route.hops === 1 ? "" : "s"} · capacity ${route.capacity}`
    : "No route: this controller knows no other AS yet.";

  fill(
    "routes",
    g.routes,
    (r) => [[`AS${r.destination}`], [r.cost], [r.hops], [r.capacity], [r.path.join(" ")]],
    (row, r) => {
      row.dataset.destination = String(r.destination);
      if (route && r.destination === route.destination) row.className = "selected";
      row.addEventListener("click", () => select(r.destination));
    },
  );
  fill("peers", g.peers, (p) => [[`RC${p.node}`], [`AS${p.asn}`], [p.addr], [short(p.fingerprint), "key"]]);
  fill(
    "members",
    g.members,
    (m) => [[`RC${m.node}`], [`AS${m.asn}`], [m.addr], [m.state], [m.seq], [m.links.length], [short(m.fingerprint), "key"]],
    (row, m) => {
      const state = row.cells[3];
      state.replaceChildren();
      const badge = document.createElement("span");
      badge.className = `badge ${m.state}`;
      badge.textContent = m.state;
      state.append(badge);
    },
  );
  fill("excluded", g.excluded, (x) => [
    [short(x.fingerprint), "key"],
    [x.node === null ? "?" : `RC${x.node}`],
    [x.why],
    [new Date(x.until_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC"],
  ]);
  fill("rejections", g.rejections, (r) => [
    [clock(r.at_ms)],
    [r.remote],
    [r.node === null ? "-" : `RC${r.node}`],
    [r.blamed ? `${r.reason} (blamed)` : r.reason],
    [r.detail],
  ]);

  const controllers = g.ases.filter((a) => a.kind === "controller").length;
  setState(
    "ok",
    `live · ${controllers} controller${controllers === 1 ? "" : "s"}, ${g.ases.length - controllers} stub AS${g.ases.length - controllers === 1 ? "" : "es"}, ${g.links.length} links · updated ${clock(g.at_ms)}`,
  );
}

async function poll() {
  const headers = options.has("token") ? { Authorization: `Bearer ${options.get("token")}` } : {};
  try {
    const answer = await fetch("/v1/topology", { headers, cache: "no-store" });
    if (answer.status === 401) {
      setState("error", "this daemon wants its control API token: open this page as /#token=TOKEN");
      return;
    }
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    graph = await answer.json();
    render(graph);
  } catch (e) {
    const since = graph ? `; showing the view of ${clock(graph.at_ms)}` : "";
    setState("error", `cannot reach the daemon (${e.message})${since}`);
  }
}

async function loop() {
  await poll();
  setTimeout(loop, POLL_MS);
}

loop();
