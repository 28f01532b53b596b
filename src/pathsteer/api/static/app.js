// The pathsteer dashboard: paths, routes, events and guard blocks of one daemon, live.
//
// Data: GET /api/v1/{status,paths,routes,events,guard/blocks,paths/NAME/history} once at load
// and again after every (re)connect of the Server-Sent Events stream /api/v1/events/stream,
// which then carries every event (`event: event`) and a paths snapshot each second
// (`event: paths`). A path.state event changes that path's card at once; steer.change events
// refetch /routes (debounced); guard events refetch the blocks. Writes (unblock, drain, undrain)
// send the API token as a bearer header: the first write goes without one (the Unix socket
// without api.token_file takes it), a 401/403 asks for the token (kept in sessionStorage for
// the tab) and tries again.
// URLs are relative, so the page also works behind a proxy under a sub-path.

import { Series, createChart, drawChart } from "./chart.js";
import * as fmt from "./format.js";

const API = "api/v1/";
const WINDOW_S = 300;          // the charts' time span
const ROUTE_ROWS = 200;        // routes rendered at most (the rest: filter to find them)
const MAX_EVENTS = 200;
const TOKEN_KEY = "pathsteer.api-token";
const STALE_S = 5;             // no paths snapshot for this long: the indicator says so

const $ = (id) => document.getElementById(id);

const view = {
  daemon: null,                // {pid, started}: a different one means a restarted daemon
  components: [],
  skew: 0,                     // daemon clock - our clock, s (from the snapshots' `at`)
  paths: new Map(),            // name -> {data, card, series, historyLoaded}
  routes: [],
  routeIndex: new Map(),       // prefix -> route
  routesTotal: 0,
  events: [],                  // newest first
  pending: [],                 // events of the stream not drawn yet (oldest first)
  seen: new Set(),             // eventKey of every event in events and pending
  blocks: [],
  steer: true,
  guard: false,
  history: false,
  lastSnapshot: 0,             // our clock, s
  conn: "connecting",
  retry: 1,
};

const now = () => Date.now() / 1000 + view.skew;

// --- HTTP ------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, { token = null, body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, init);
  let answer = null;
  try {
    answer = await r.json();
  } catch {
    answer = null;
  }
  if (!r.ok) throw new HttpError(r.status, (answer && answer.error) || `${method} ${path}: HTTP ${r.status}`);
  return answer;
}

const get = (path) => request("GET", path);

// --- helpers -----------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// Elements showing "how long ago" carry data-at (epoch s) and data-ago ("ago" | "for"); the
// ticker rewrites them each second.
function ago(t, mode = "ago") {
  const s = h("span", { class: "age muted", "data-at": String(t ?? ""), "data-ago": mode, title: fmt.isoTime(t) });
  s.textContent = agoText(t, mode);
  return s;
}

function agoText(t, mode) {
  if (t == null || t === "") return "";
  const d = fmt.duration(now() - Number(t));
  return mode === "for" ? `for ${d}` : `${d} ago`;
}

function debounce(fn, wait, maxWait) {
  let timer = null;
  let first = 0;
  return () => {
    const t = Date.now();
    if (timer === null) first = t;
    else clearTimeout(timer);
    const delay = Math.max(0, Math.min(wait, first + maxWait - t));
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, delay);
  };
}

// fn at most once per `wait` ms, the first call starting the wait (a burst draws once).
function coalesce(fn, wait) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, wait);
  };
}

function report(where, err) {
  // Expected failures (the daemon restarting, a 503 while it starts) are shown, not thrown:
  // the console stays clean.
  console.warn(`pathsteer dashboard: ${where}: ${err.message || err}`);
}

// --- connection --------------------------------------------------------------------------------

function setConn(state, text) {
  view.conn = state;
  const c = $("conn");
  c.dataset.state = state;
  c.textContent = text;
}

function connect() {
  const es = new EventSource(API + "events/stream");
  es.addEventListener("open", () => {
    view.retry = 1;
    view.lastSnapshot = Date.now() / 1000;
    setConn("live", "live");
    refreshAll();
  });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED) {
      // the browser gave up (an HTTP error answer): retry ourselves, backing off to 10 s
      const wait = view.retry;
      view.retry = Math.min(10, view.retry * 2);
      setConn("offline", `offline — retrying in ${wait} s`);
      setTimeout(connect, wait * 1000);
    } else {
      setConn("reconnecting", "reconnecting…");
    }
  });
  es.addEventListener("event", (m) => {
    try {
      onEvent(JSON.parse(m.data));
    } catch (err) {
      report("event", err);
    }
  });
  es.addEventListener("overflow", () => refreshAll());   // we fell behind: events were dropped
  es.addEventListener("paths", (m) => {
    try {
      onSnapshot(JSON.parse(m.data));
    } catch (err) {
      report("paths", err);
    }
  });
}

let refreshing = null;
let refreshAgain = false;

// Everything from scratch (at load and after each reconnect: events may have been missed).
async function refreshAll() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      await loadStatus();
    } catch (err) {
      report("status", err);
      return;
    }
    const parts = { paths: loadPaths, routes: loadRoutes, events: loadEvents, "guard blocks": loadBlocks };
    const results = await Promise.allSettled(Object.values(parts).map((f) => f()));
    Object.keys(parts).forEach((name, i) => {
      if (results[i].status === "rejected") report(name, results[i].reason);
    });
    await loadHistories();
  })();
  await refreshing;
  refreshing = null;
  if (refreshAgain) {
    refreshAgain = false;
    refreshAll();
  }
}

async function loadStatus() {
  const s = await get("status");
  const id = `${s.pid}/${s.started}`;
  if (view.daemon !== null && view.daemon !== id) {
    // another daemon process: its event numbers start again
    view.events = [];
    view.pending = [];
    view.seen.clear();
  }
  view.daemon = id;
  view.components = (s.components || []).map((c) => (typeof c === "string" ? c : c.name));
  view.steer = view.components.includes("steer");
  view.guard = view.components.includes("guard");
  view.history = view.components.includes("history");
  $("version").textContent = `v${s.version} · pid ${s.pid}${s.ready ? "" : " · starting"}`;
  $("guard-section").hidden = !view.guard;
  $("paths-section").hidden = !view.steer;
  $("routes-section").hidden = !view.steer;
}

// --- paths -----------------------------------------------------------------------------------

async function loadPaths() {
  if (!view.steer) return;
  const r = await get("paths");
  applyPaths(r.paths, now());
}

function onSnapshot(snap) {
  if (typeof snap.at === "number") view.skew = snap.at - Date.now() / 1000;
  view.lastSnapshot = Date.now() / 1000;
  if (view.conn !== "live") setConn("live", "live");
  applyPaths(snap.paths || [], snap.at ?? now());
}

function applyPaths(list, at) {
  const seen = new Set();
  for (const p of list) {
    seen.add(p.name);
    let entry = view.paths.get(p.name);
    if (!entry) {
      entry = { data: p, card: buildCard(p, view.paths.size), series: new Series(WINDOW_S), historyLoaded: false };
      view.paths.set(p.name, entry);
    }
    entry.data = p;
    const last = entry.series.latest();
    const span = last ? Math.min(5, Math.max(0.5, at - last.t)) : 1;
    entry.series.add({ t: at, span, rtt: p.rtt_p50_ms ?? p.rtt_ms ?? null, rtt95: p.rtt_p95_ms ?? null,
      loss: p.loss_pct ?? null, state: p.drained ? "drained" : p.state });
    entry.series.trim(at);
    renderCard(entry);
  }
  for (const [name, entry] of view.paths) {
    if (!seen.has(name)) {   // a reload removed it
      entry.card.remove();
      view.paths.delete(name);
    }
  }
  const box = $("paths");
  const cards = [...view.paths.values()].map((e) => e.card);
  if (box.children.length !== cards.length || cards.some((c, i) => box.children[i] !== c)) box.replaceChildren(...cards);
  if (!cards.length) box.replaceChildren(h("p", { class: "muted", text: "No paths configured." }));
  $("paths-count").textContent = `(${cards.length})`;
}

function buildCard(p, index) {
  const id = `path-${index}`;
  const field = (label, cls) => h("div", {}, h("dt", { text: label }), h("dd", { class: cls, text: fmt.dash }));
  const svg = createChart(`RTT and loss of ${p.name}, last ${WINDOW_S / 60} minutes`);
  const card = h("article", { class: "path", "data-path": p.name, "aria-labelledby": `${id}-name` },
    h("div", { class: "path-head" },
      h("h3", { id: `${id}-name`, text: p.name }),
      h("span", { class: "badge state", role: "status", "aria-label": `state of ${p.name}` }),
      h("span", { class: "since" }),
      h("span", { class: "spacer" }),
      h("span", { class: "where muted" }),
      h("button", { type: "button", class: "small drain", "aria-label": `Drain ${p.name}`, text: "Drain…" })),
    h("p", { class: "drain-note", hidden: true }),
    h("p", { class: "message", role: "alert", hidden: true }),
    h("dl", { class: "figures" }, field("RTT p50", "rtt50"), field("RTT p95", "rtt95"), field("Loss", "loss"),
      field("Jitter", "jitter")),
    h("div", { class: "util" },
      h("span", { text: "Utilisation" }),
      h("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-label": `utilisation of ${p.name}` }, h("div", { class: "fill" })),
      h("span", { class: "util-text muted" })),
    h("p", { class: "load muted" }),
    h("div", { class: "chart" }, svg, h("span", { class: "scale" }),
      h("div", { class: "legend", "aria-hidden": "true" },
        h("span", {}, h("i", { class: "lg-rtt" }), "RTT p50"),
        h("span", {}, h("i", { class: "lg-rtt95" }), "p95"),
        h("span", {}, h("i", { class: "lg-loss" }), "loss"),
        h("span", { class: "window", text: `last ${WINDOW_S / 60} min` }))),
    h("ul", { class: "targets", "aria-label": `probe targets of ${p.name}` }));
  const button = card.querySelector("button.drain");
  button.addEventListener("click", () => toggleDrain(p.name, button));
  return card;
}

function renderCard(entry) {
  const p = entry.data;
  const card = entry.card;
  const state = p.drained ? "drained" : p.state || "unknown";
  const q = (sel) => card.querySelector(sel);
  card.dataset.state = state;
  const badge = q(".state");
  badge.dataset.state = state;
  badge.textContent = state.toUpperCase();
  q(".since").replaceChildren(p.since != null ? ago(p.since, "for") : "");
  const where = [p.interface, p.gateway ? `via ${p.gateway}` : null].filter(Boolean).join(" ");
  q(".where").textContent = where;
  q(".rtt50").textContent = fmt.ms(p.rtt_p50_ms ?? p.rtt_ms);
  q(".rtt95").textContent = fmt.ms(p.rtt_p95_ms);
  q(".loss").textContent = fmt.pct(p.loss_pct);
  q(".jitter").textContent = fmt.ms(p.jitter_ms);

  const util = p.utilization;
  const fill = q(".fill");
  const bar = q(".bar");
  q(".load").textContent = p.load ? `in ${fmt.bps(p.load.in_bps)} · out ${fmt.bps(p.load.out_bps)}` : "";
  if (util == null) {
    fill.style.width = "0";
    bar.setAttribute("aria-valuenow", "0");
    q(".util-text").textContent = p.capacity_bps ? `${fmt.dash} of ${fmt.bps(p.capacity_bps)}` : "no capacity set";
  } else {
    const v = Math.max(0, util) * 100;
    fill.style.width = `${Math.min(100, v)}%`;
    fill.classList.toggle("high", v >= 80 && v < 100);
    fill.classList.toggle("full", v >= 100);
    bar.setAttribute("aria-valuenow", String(Math.round(v)));
    q(".util-text").textContent = `${fmt.pct(v)} of ${fmt.bps(p.capacity_bps)}`;
  }

  const drainButton = q("button.drain");
  drainButton.textContent = p.drained ? "Undrain" : "Drain…";
  drainButton.setAttribute("aria-label", `${p.drained ? "Undrain" : "Drain"} ${p.name}`);
  const note = q(".drain-note");
  if (p.drained) {
    const until = p.drained.until ? ` until ${fmt.clock(p.drained.until)}` : "";
    const probes = p.probe_state ? ` (probes: ${p.probe_state})` : "";
    note.textContent = `drained${until}${p.drained.reason ? `: ${p.drained.reason}` : ""}${probes}`;
    note.hidden = false;
  } else {
    note.hidden = true;
  }

  const targets = (p.target_states || []).map((t) => h("li", { "data-state": t.state, title: `${t.address}: ${t.state}` },
    `${t.address} ${t.state}${t.rtt_ms != null ? ` ${fmt.ms(t.rtt_ms)}` : ""}${t.loss_pct ? ` ${fmt.pct(t.loss_pct)} loss` : ""}`));
  q(".targets").replaceChildren(...targets);
  drawPath(entry);
}

function drawPath(entry) {
  const top = drawChart(entry.card.querySelector("svg"), entry.series, now());
  entry.card.querySelector(".scale").textContent = `${top} ms`;
  const p = entry.data;
  entry.card.querySelector("svg").setAttribute("aria-label",
    `${p.name}, last ${WINDOW_S / 60} minutes: RTT p50 now ${fmt.ms(p.rtt_p50_ms ?? p.rtt_ms)}, loss ${fmt.pct(p.loss_pct)}`);
}

// A path.state event: the card changes now, not at the next snapshot.
function onPathState(e) {
  const entry = view.paths.get(e.path);
  if (!entry || !e.to) return;
  entry.data = { ...entry.data, state: e.to, since: e.at };
  renderCard(entry);
}

async function loadHistories() {
  if (!view.history) return;
  const since = Math.floor(now() - WINDOW_S);
  await Promise.all([...view.paths.entries()].filter(([, e]) => !e.historyLoaded).map(async ([name, entry]) => {
    try {
      const r = await get(`paths/${encodeURIComponent(name)}/history?since=${since}`);
      entry.historyLoaded = true;
      const span = r.interval_s || 10;
      for (const ru of r.rollups || []) {
        entry.series.add({ t: ru.end, span: Math.max(span, ru.end - ru.start), rtt: ru.rtt_p50_ms ?? null,
          rtt95: ru.rtt_p95_ms ?? null, loss: ru.loss_pct ?? null, state: ru.worst_state ?? ru.state ?? null });
      }
      drawPath(entry);
    } catch (err) {
      entry.historyLoaded = true;   // history off or failing: the chart starts from the live points
      report(`history of ${name}`, err);
    }
  }));
}

// --- routes ------------------------------------------------------------------------------------

async function loadRoutes() {
  if (!view.steer) return;
  const r = await get("routes");
  view.routes = (r.routes || []).map((x) => ({ ...x, _text: fmt.routeSearchText(x) }));
  view.routeIndex = new Map(view.routes.map((x) => [x.prefix, x]));
  view.routesTotal = r.total ?? view.routes.length;
  renderRoutes();
}

const reloadRoutes = debounce(() => loadRoutes().catch((err) => report("routes", err)), 300, 2000);

function hopsCell(r) {
  const hops = r.nexthops && r.nexthops.length ? r.nexthops : fmt.parseHops(r.via);
  const td = h("td", { class: "via" });
  if (!hops.length) td.textContent = r.via || fmt.dash;
  for (const hop of hops) {
    const s = h("span", { class: "hop", "data-path": hop.path }, hop.path);
    if (hops.length > 1) s.append(" ", h("span", { class: "share", text: `${Math.round(hop.share * 100)} % (w ${hop.weight})` }));
    td.append(s);
  }
  return td;
}

function routeRow(r) {
  const t = now();
  const tr = h("tr", { "data-prefix": r.prefix, class: r.since != null && t - r.since < 10 ? "changed" : null,
    "data-since": r.since != null ? String(r.since) : null },
    h("td", { class: "prefix", text: r.prefix }),
    hopsCell(r),
    h("td", { class: "policy", text: r.policy ?? "" }),
    h("td", { class: "kind", text: r.kind ?? "" }),
    h("td", { class: "reason", text: r.pending ? `${r.reason} (pending: ${r.pending})` : (r.reason ?? "") }),
    h("td", { class: "since" }, r.since != null ? ago(r.since) : fmt.dash));
  return tr;
}

function renderRoutes() {
  const q = $("routes-filter").value.trim().toLowerCase();
  const terms = q ? q.split(/\s+/) : [];
  const rows = [];
  let matched = 0;
  for (const r of view.routes) {
    if (terms.length && !terms.every((w) => r._text.includes(w))) continue;
    matched++;
    if (rows.length < ROUTE_ROWS) rows.push(routeRow(r));
  }
  const tbody = $("routes").tBodies[0];
  if (!rows.length) {
    const text = view.routes.length ? "No route matches the filter." : "No steered routes.";
    rows.push(h("tr", {}, h("td", { colspan: "6", class: "muted", text })));
  }
  tbody.replaceChildren(...rows);
  const total = view.routesTotal;
  $("routes-count").textContent = terms.length ? `(${matched} of ${total} match)` : `(${total})`;
  const more = $("routes-more");
  const shown = Math.min(matched, ROUTE_ROWS);
  more.hidden = matched <= ROUTE_ROWS && view.routes.length >= total;
  more.textContent = `Showing the first ${shown} of ${matched}: filter to find the others.`;
}

// A steer.change: the row shows the new hops at once; the refetch brings the rest.
function onSteerChange(e) {
  const r = view.routeIndex.get(e.prefix);
  if (r && e.to) {
    Object.assign(r, { via: e.to, nexthops: fmt.parseHops(e.to), kind: e.kind ?? r.kind, reason: e.reason ?? r.reason,
      since: e.at, pending: null });
    r._text = fmt.routeSearchText(r);
    redrawRoutes();
  }
  reloadRoutes();
}

const redrawRoutes = coalesce(renderRoutes, 100);

// --- events ------------------------------------------------------------------------------------

async function loadEvents() {
  const r = await get(`events?limit=${MAX_EVENTS}`);
  // keep anything the stream brought meanwhile (drawn or not)
  const merged = new Map();
  for (const e of [...(r.events || []), ...view.pending, ...view.events]) merged.set(eventKey(e), e);
  view.pending = [];
  view.events = [...merged.values()].sort(newestFirst).slice(0, MAX_EVENTS);
  view.seen = new Set(view.events.map(eventKey));
  $("events").replaceChildren(...view.events.map((e) => eventItem(e, false)));
  if (!view.events.length) $("events").replaceChildren(h("li", { class: "muted empty", text: "No events yet." }));
  $("events-count").textContent = `(${view.events.length})`;
}

// The history's events span daemon processes, whose seq numbers each start at 1: an event is
// told by its seq and its time together.
const eventKey = (e) => `${e.seq ?? ""}@${e.at}`;
const newestFirst = (a, b) => b.at - a.at || (b.seq ?? 0) - (a.seq ?? 0);

function eventItem(e, fresh) {
  const d = fmt.describe(e);
  const li = h("li", { class: [d.tone, fresh ? "fresh" : ""].filter(Boolean).join(" ") || null,
    "data-name": e.name, "data-seq": e.seq != null ? String(e.seq) : null },
    h("time", { datetime: fmt.isoTime(e.at), title: fmt.isoTime(e.at), text: fmt.clock(e.at) }),
    h("span", { class: "name", text: e.name }),
    h("span", { class: "text", text: d.text }));
  if (fresh) setTimeout(() => li.classList.remove("fresh"), 5000);
  return li;
}

function onEvent(e) {
  const key = eventKey(e);
  if (view.seen.has(key)) return;
  view.seen.add(key);
  view.pending.push(e);
  drawEvents();

  if (e.name === "path.state") onPathState(e);
  else if (e.name === "steer.change") onSteerChange(e);
  else if (e.name.startsWith("guard.")) reloadBlocks();
  else if (e.name === "steer.reload" || e.name === "daemon.reload") {
    reloadRoutes();
    loadStatus().catch((err) => report("status", err));
  }
}

// The stream's new events into the timeline, a burst at once (10k reroutes in a second draw
// the newest MAX_EVENTS once, not 10k times).
const drawEvents = coalesce(() => {
  const batch = view.pending.reverse().slice(0, MAX_EVENTS);   // newest first
  view.pending = [];
  if (!batch.length) return;
  view.events = [...batch, ...view.events].slice(0, MAX_EVENTS);
  view.seen = new Set(view.events.map(eventKey));
  const list = $("events");
  list.querySelector("li.empty")?.remove();
  list.prepend(...batch.map((e) => eventItem(e, true)));
  while (list.children.length > view.events.length) list.lastElementChild.remove();
  $("events-count").textContent = `(${view.events.length})`;
}, 50);

// --- guard -------------------------------------------------------------------------------------

async function loadBlocks() {
  if (!view.guard) return;
  try {
    const r = await get("guard/blocks");
    view.blocks = r.blocks || [];
  } catch (err) {
    if (err.status === 404) {       // the guard is not running
      view.guard = false;
      $("guard-section").hidden = true;
      return;
    }
    throw err;
  }
  renderBlocks();
}

const reloadBlocks = debounce(() => loadBlocks().catch((err) => report("guard blocks", err)), 300, 2000);

function renderBlocks() {
  const rows = view.blocks.map((b) => {
    const button = h("button", { type: "button", class: "small unblock", "data-cidr": b.cidr, text: "Unblock",
      "aria-label": `Unblock ${b.cidr}` });
    button.addEventListener("click", () => unblock(b.cidr, button));
    const expires = b.expires == null ? h("span", { class: "muted", text: "never" })
      : h("span", { title: fmt.isoTime(b.expires) }, `in ${fmt.duration(b.expires - now())}`);
    if (b.expires != null) expires.dataset.until = String(b.expires);
    return h("tr", { "data-cidr": b.cidr },
      h("td", { class: "prefix", text: b.cidr }),
      h("td", { text: b.origin ?? "" }),
      h("td", { class: "reason", text: b.reason ?? "" }),
      h("td", { class: "since" }, expires),
      h("td", {}, button));
  });
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "5", class: "muted", text: "Nothing is blocked." })));
  $("blocks").tBodies[0].replaceChildren(...rows);
  $("guard-count").textContent = `(${view.blocks.length})`;
}

function guardMessage(text) {
  const m = $("guard-message");
  m.textContent = text;
  m.hidden = !text;
}

async function unblock(cidr, button) {
  guardMessage("");
  button.disabled = true;
  try {
    const r = await authorized("DELETE", `guard/blocks?cidr=${encodeURIComponent(cidr)}`);
    if (r === null) return;
    guardMessage(`Unblocked ${cidr}.`);
    view.blocks = view.blocks.filter((b) => b.cidr !== cidr);
    renderBlocks();
    reloadBlocks();
  } catch (err) {
    guardMessage(`Could not unblock ${cidr}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- drain -------------------------------------------------------------------------------------

function cardMessage(name, text) {
  const m = view.paths.get(name)?.card.querySelector(".message");
  if (!m) return;
  m.textContent = text;
  m.hidden = !text;
}

function askDrain(name) {
  const dialog = $("drain-dialog");
  $("drain-path").textContent = name;
  $("drain-reason").value = "";
  $("drain-ttl").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const body = {};
      const reason = $("drain-reason").value.trim();
      const ttl = $("drain-ttl").value.trim();
      if (reason) body.reason = reason;
      if (ttl) body.ttl = ttl;
      resolve(body);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("drain-reason").focus();
  });
}

async function toggleDrain(name, button) {
  const entry = view.paths.get(name);
  if (!entry) return;
  const undrain = !!entry.data.drained;
  cardMessage(name, "");
  let body;
  if (!undrain) {
    body = await askDrain(name);
    if (body === null) return;
  }
  button.disabled = true;
  try {
    const verb = undrain ? "undrain" : "drain";
    const r = await authorized("POST", `paths/${encodeURIComponent(name)}/${verb}`, body);
    if (r !== null) await loadPaths();
  } catch (err) {
    cardMessage(name, `Could not ${undrain ? "undrain" : "drain"} ${name}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- writes and the token ----------------------------------------------------------------------

// A write: with the token kept for this tab (or none yet); on 401/403 the dialog says why and
// asks for one, then the write is tried again. Resolves to the answer, or null if the user
// cancelled; other errors are thrown.
async function authorized(method, path, body) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    try {
      return await request(method, path, { token, body });
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) throw err;
      sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      const why = !token ? `This change needs the API token (${err.status}): ${err.message}`
        : `The daemon refused the token (${err.status}): ${err.message}`;
      if (!(await askToken(why))) return null;
    }
  }
}

// Shows the token dialog; resolves to the token entered (also stored) or null.
function askToken(why = "") {
  const dialog = $("token-dialog");
  const input = $("token-input");
  const error = $("token-error");
  error.textContent = why;
  error.hidden = !why;
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const token = dialog.returnValue === "ok" ? input.value.trim() : "";
      input.value = "";
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      updateTokenButton();
      resolve(token || null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

function updateTokenButton() {
  const has = !!sessionStorage.getItem(TOKEN_KEY);
  $("token-button").textContent = has ? "Token set" : "Set token";
  $("token-button").title = has ? "A token is kept for this tab: click to change it" : "Enter the API token for changes";
  $("token-clear").hidden = !has;
}

// --- ticker: ages, staleness, charts sliding when no snapshot comes ----------------------------

function tick() {
  for (const e of document.querySelectorAll("[data-at]")) e.textContent = agoText(e.dataset.at, e.dataset.ago);
  for (const e of document.querySelectorAll("[data-until]")) e.textContent = `in ${fmt.duration(Number(e.dataset.until) - now())}`;
  const t = now();
  for (const tr of document.querySelectorAll("#routes tr.changed")) {
    if (t - Number(tr.dataset.since) >= 10) tr.classList.remove("changed");
  }
  const quiet = Date.now() / 1000 - view.lastSnapshot;
  if (view.conn === "live" && view.steer && quiet > STALE_S) setConn("stale", `no update for ${Math.floor(quiet)} s`);
  if (quiet > 2) for (const entry of view.paths.values()) drawPath(entry);
}

// --- start -------------------------------------------------------------------------------------

function start() {
  $("routes-filter").addEventListener("input", debounce(renderRoutes, 120, 500));
  $("token-button").addEventListener("click", () => askToken());
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close("cancel");
  });
  updateTokenButton();
  refreshAll();
  connect();
  setInterval(tick, 1000);
}

start();
