// Sparklio Desk dashboard: plain JS, no build step, no framework.
// Everything comes from the core's JSON APIs; live updates arrive over Server-Sent
// Events (read with fetch, so the admin key can travel in a header).
"use strict";

const KEY_STORAGE = "sparklio-desk.admin-key";
const HISTORY_POINTS = 180; // sparkline length
// The core sends a snapshot every 2 s: a live stream silent for three of them is taken as a
// lost connection (a hung core, a sleeping desktop, a link dropped without FIN or RST).
const SNAPSHOT_EVERY_MS = 2000;
const LIVE_IDLE_MS = 3 * SNAPSHOT_EVERY_MS;
// Log tails and a check's events are quiet while nothing happens; the core's SSE keep-alive
// comes every 15 s, so only silence well past that counts as lost.
const TAIL_IDLE_MS = 40_000;
// A GET the core does not answer in this time is as good as unreachable.
const GET_TIMEOUT_MS = 15_000;
const $ = (sel) => document.querySelector(sel);

const ui = {
  services: new Map(), // name -> card element
  logAbort: null,
  history: [], // system samples, oldest first
  lastStatus: null,
  readOnly: false, // a gateway (non-admin) key: no services, logs or controls
  connected: false,
  log: null, // the open log viewer: { name, abort, lastTs }
  flow: null, // the end-to-end check this page follows: { id, abort, rereading }
  providerStates: null, // "name:state" of services that provide models, to refresh the panel
};

// Abort a stream and say why (the reader's catch tells "closed by the user" from the rest).
function interrupt(ctrl, why) {
  if (!ctrl) return;
  ctrl.why = why;
  ctrl.abort();
}

// ---------- HTTP ----------

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, init = {}) {
  const method = (init.method || "GET").toUpperCase();
  const resp = await fetch(path, {
    // Reads give up on a core that does not answer; actions (a model load) may take long.
    signal: init.signal || (method === "GET" && AbortSignal.timeout ? AbortSignal.timeout(GET_TIMEOUT_MS) : undefined),
    ...init,
    headers: { ...authHeaders(), ...(init.body ? { "Content-Type": "application/json" } : {}), ...(init.headers || {}) },
  });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error(body?.error?.message || `HTTP ${resp.status}`);
    err.status = resp.status;
    err.code = body?.error?.code;
    throw err;
  }
  return body;
}

// Read a text/event-stream with fetch; calls onEvent(name, data) per event.
// Resolves when the stream ends, rejects on HTTP or network errors, and with err.idle set
// when nothing (not even a keep-alive) arrived for idleMs: a silent socket never errors.
async function readEvents(path, onEvent, signal, idleMs = 0) {
  const ctrl = new AbortController();
  const stop = () => ctrl.abort();
  if (signal?.aborted) ctrl.abort();
  signal?.addEventListener("abort", stop, { once: true });
  let timer = null;
  let idle = false;
  const arm = () => {
    if (!idleMs) return;
    clearTimeout(timer);
    timer = setTimeout(() => { idle = true; ctrl.abort(); }, idleMs);
  };
  try {
    arm();
    const resp = await fetch(path, { headers: { ...authHeaders(), Accept: "text/event-stream" }, signal: ctrl.signal });
    if (!resp.ok) {
      const body = await resp.json().catch(() => null);
      const err = new Error(body?.error?.message || `HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    await readBlocks(resp.body.getReader(), onEvent, arm);
  } catch (e) {
    if (!idle) throw e;
    const err = new Error(`no answer for ${Math.round(idleMs / 1000)} s`);
    err.idle = true;
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", stop);
  }
}

async function readBlocks(reader, onEvent, onBytes) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed;
      try { parsed = JSON.parse(data.join("\n")); } catch { parsed = data.join("\n"); }
      onEvent(name, parsed);
    }
  }
}

// ---------- formatting ----------

const fmt = {
  bytes(n) {
    if (n == null) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  },
  pct(n) { return n == null ? "—" : `${Math.round(n)} %`; },
  ms(n) { return n == null ? "—" : n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`; },
  uptime(s) {
    if (s == null) return "—";
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
  },
  time(ts) {
    if (!ts) return "";
    const d = new Date(ts);
    return isNaN(d) ? ts : d.toLocaleTimeString();
  },
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

function definitionList(items) {
  return items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "—" })]);
}

// ---------- connection state ----------

function setConnection(state, text) {
  const pill = $("#conn");
  pill.dataset.state = state;
  pill.textContent = text;
}

// kind "info" (read-only key) is not an error: the banner is then neutral.
function showBanner(text, kind = "error") {
  const b = $("#banner");
  b.hidden = !text;
  b.dataset.kind = kind;
  b.textContent = text || "";
}

// A message about an action the page could not do, in the page (no alert()).
function pageNote(text) {
  const n = $("#page-note");
  n.hidden = !text;
  n.textContent = text || "";
}

const READ_ONLY_TEXT = "Read-only: this key is not an admin key. Services, logs and controls need an admin key (Key button).";

function reportError(e) {
  ui.connected = false;
  markStale();
  const hasKey = !!localStorage.getItem(KEY_STORAGE);
  if (e.status === 401 && !hasKey) {
    setConnection("down", "key needed");
    showBanner("This dashboard is opened from another machine: enter an admin key (Key button).");
  } else if (e.status === 401 || e.status === 403) {
    setConnection("down", "key refused");
    showBanner(`The core refused this key (${e.status}: ${e.message}). Enter an admin key (Key button).`);
  } else {
    setConnection("down", "core unreachable");
    showBanner(`Sparklio Desk core is unreachable (${e.message}). Reconnecting…`);
  }
}

// While the core cannot be heard, what is shown is the last thing it said: the health and
// the services' states are unknown, and the panels are dimmed.
function markStale() {
  document.body.dataset.stale = "true";
  const pill = $("#health");
  pill.dataset.level = "unknown";
  pill.textContent = "health unknown";
  for (const card of ui.services.values()) {
    card.dataset.stale = "true";
    card.dataset.level = "unknown";
    card.querySelector(".state").textContent = "unknown";
    card.title = `last known state: ${card.dataset.state}`;
  }
}

// A gateway key: the core leaves services out (GET /api/v1/services is 403), and every
// control would be refused, so they are hidden and the page says why.
function setReadOnly(readOnly) {
  if (ui.readOnly === readOnly) return;
  ui.readOnly = readOnly;
  document.body.dataset.access = readOnly ? "read-only" : "admin";
  if (readOnly) {
    ui.services.clear();
    $("#services").replaceChildren(el("p", { class: "empty", text: "The services, their logs and controls need an admin key: this key is read-only." }));
    if (ui.log) closeLogs();
    refreshModels();
  }
}

// ---------- services ----------

const LEVELS = {
  running: "ok",
  starting: "degraded", restarting: "degraded", backoff: "degraded", unhealthy: "degraded",
  crashed: "down", failed: "down", unavailable: "down", stopped: "idle",
  // The gateway's error-rate alarm (service "gateway" in the event log).
  failing: "down", ok: "ok",
};

function levelOf(state) { return LEVELS[state] || "idle"; }

function serviceCard(svc) {
  const card = el("article", { class: "service", "data-name": svc.name });
  // Buttons repeat on every card: their accessible names say which service they act on.
  const controls = svc.kind === "external"
    // Someone else runs it: the core refuses start/stop/restart (409), so none are offered.
    ? [el("span", { class: "watched", text: "watched only: started outside Sparklio Desk" })]
    : ["start", "stop", "restart"].map((action) => {
      const label = action[0].toUpperCase() + action.slice(1);
      return el("button", { type: "button", class: action === "restart" ? "" : "secondary", text: label, "data-action": action, "aria-label": `${label} ${svc.name}`, onclick: () => serviceAction(svc.name, action) });
    });
  card.append(
    el("div", { class: "title" }, el("span", { class: "name", text: svc.name }), el("span", { class: "state" })),
    el("dl"),
    el("div", { class: "error" }),
    el("div", { class: "action-note", role: "status" }),
    el(
      "div",
      { class: "actions" },
      ...controls,
      el("button", { type: "button", class: "secondary", text: "Logs", "aria-label": `Logs of ${svc.name}`, onclick: () => openLogs(svc.name) }),
    ),
  );
  return card;
}

function renderServices(list) {
  const box = $("#services");
  if (!list.length) {
    box.replaceChildren(el("p", { class: "empty", text: "No services configured yet: find them on this machine above, or add [[services]] to the config file (see `sparklio-desk config default`)." }));
    ui.services.clear();
    // First run: offer discovery once, without being asked.
    if (!ui.discoveryOffered) { ui.discoveryOffered = true; $("#discovery").hidden = false; }
    return;
  }
  const seen = new Set();
  for (const svc of list) {
    seen.add(svc.name);
    let card = ui.services.get(svc.name);
    if (!card) {
      card = serviceCard(svc);
      ui.services.set(svc.name, card);
    }
    delete card.dataset.stale;
    card.title = "";
    card.dataset.level = levelOf(svc.state);
    card.dataset.state = svc.state;
    card.querySelector(".state").textContent = svc.state;
    card.querySelector("dl").replaceChildren(...definitionList([
      ["kind", svc.kind],
      ["uptime", svc.state === "running" ? fmt.uptime(svc.uptime_s) : "—"],
      ["restarts", svc.restarts],
      ["pid", svc.pid],
      ["cpu / memory", `${fmt.pct(svc.cpu_percent)} / ${fmt.bytes(svc.memory_bytes)}`],
      ["port", svc.port],
      ["probe", fmt.ms(svc.last_probe_latency_ms)],
      ["provides", (svc.provides || []).join(", ") || "—"],
      // Docker: what the engine says (inspect and its event stream).
      ...(svc.docker ? [
        ["image", svc.docker.image],
        ["container health", svc.docker.health || "no check"],
        ["engine restarts", svc.docker.restart_count],
      ] : []),
    ]));
    // Why it is not running (e.g. "Docker is not running", "port 8188 is already in use").
    card.querySelector(".error").textContent = svc.state === "running" ? "" : svc.reason || svc.last_error || "";
  }
  for (const [name, card] of ui.services) {
    if (!seen.has(name)) { card.remove(); ui.services.delete(name); }
  }
  box.replaceChildren(...list.map((s) => ui.services.get(s.name)));
  updateEventServiceFilter(list.map((s) => s.name));
  // A providing service went down or came back (or was added): its models changed with it.
  const providers = list.filter((s) => (s.provides || []).length).map((s) => `${s.name}:${s.state}`).join(",");
  if (ui.providerStates != null && providers !== ui.providerStates) refreshModels();
  ui.providerStates = providers;
}

async function serviceAction(name, action) {
  const card = ui.services.get(name);
  const buttons = card ? [...card.querySelectorAll("button[data-action]")] : [];
  const note = card?.querySelector(".action-note");
  if (note) note.textContent = "";
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api(`/api/v1/services/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    await refreshServices();
  } catch (e) {
    if (note) note.textContent = `${action} failed: ${e.message}`;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function refreshServices() {
  let body;
  try {
    body = await api("/api/v1/services");
  } catch (e) {
    if (e.status === 403) return setReadOnly(true);
    throw e;
  }
  setReadOnly(false);
  renderServices(body.services || []);
}

// ---------- discovery and reload ----------

function splitList(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
}

function proposalItem(f) {
  const box = el("input", { type: "checkbox", checked: true });
  box.dataset.name = f.name;
  const toml = [f.service_toml, f.provider_toml].filter(Boolean).join("\n");
  return el("li", { class: "proposal", "data-name": f.name },
    el("label", {}, box, el("strong", { text: ` ${f.name}` }), el("span", { class: "muted", text: ` — ${f.what}, ${f.how}${f.url ? `, ${f.url}` : ""}` })),
    el("details", {}, el("summary", { text: "what will be added" }), el("pre", { text: toml })));
}

async function runDiscovery() {
  const note = $("#discover-note");
  const results = $("#discover-results");
  const ports = splitList($("#discover-ports").value).map(Number).filter((n) => n > 0 && n < 65536);
  const dirs = splitList($("#discover-dirs").value);
  note.classList.remove("bad");
  note.textContent = "searching…";
  $("#discover-run").disabled = true;
  try {
    const body = await api("/api/v1/discover", { method: "POST", body: JSON.stringify({ ports, dirs }) });
    if (!body.found.length) {
      results.replaceChildren();
      note.textContent = `Nothing new found (ports ${body.ports.join(", ")}, ${body.folders} folder(s)${body.docker_error ? `; Docker: ${body.docker_error}` : ""}).`;
      return;
    }
    const accept = el("button", { type: "button", text: "Add to config and supervise", id: "discover-accept" });
    accept.addEventListener("click", acceptDiscovery);
    results.replaceChildren(el("ul", { class: "proposals" }, ...body.found.map(proposalItem)), accept);
    note.textContent = `Found ${body.found.length}. Checked ones are written to ${body.config_file || "the config file"} (comments kept) and supervised at once.`;
  } catch (e) {
    note.classList.add("bad");
    note.textContent = `search failed: ${e.message}`;
  } finally {
    $("#discover-run").disabled = false;
  }
}

async function acceptDiscovery() {
  const note = $("#discover-note");
  const names = [...document.querySelectorAll("#discover-results input[type=checkbox]:checked")].map((b) => b.dataset.name);
  if (!names.length) { note.textContent = "check at least one"; return; }
  note.classList.remove("bad");
  note.textContent = "writing the config…";
  try {
    const body = await api("/api/v1/discover/accept", { method: "POST", body: JSON.stringify({ names }) });
    $("#discover-results").replaceChildren();
    note.textContent = `Added to ${body.config_file}: ${body.added.join(", ")}. Supervising now.`;
    $("#discovery").dataset.accepted = names.join(",");
    await Promise.allSettled([refreshServices(), refreshModels()]);
  } catch (e) {
    note.classList.add("bad");
    note.textContent = `not added: ${e.message}`;
  }
}

async function reloadConfig() {
  const note = $("#reload-note");
  note.classList.remove("bad");
  note.textContent = "reloading…";
  try {
    const r = await api("/api/v1/config/reload", { method: "POST" });
    note.textContent = `Config reloaded: ${r.summary}.`;
    await Promise.allSettled([refreshServices(), refreshModels()]);
  } catch (e) {
    note.classList.add("bad");
    note.textContent = `Config not applied: ${e.message}`;
  }
}

$("#discover-open").addEventListener("click", () => { $("#discovery").hidden = false; });
$("#discover-close").addEventListener("click", () => { $("#discovery").hidden = true; });
$("#discover-run").addEventListener("click", runDiscovery);
$("#reload-config").addEventListener("click", reloadConfig);

// ---------- logs ----------

function appendLog(entry) {
  if (ui.log && entry.ts) ui.log.lastTs = entry.ts;
  const pre = $("#log-lines");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const line = el("span", { class: entry.stream === "stderr" ? "stderr" : "", text: `${entry.line ?? entry}\n` });
  pre.append(line);
  while (pre.childNodes.length > 2000) pre.firstChild.remove();
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function openLogs(name) {
  if (ui.log) interrupt(ui.log.abort, "closed");
  ui.log = { name, abort: null, lastTs: null };
  $("#log-viewer").hidden = false;
  $("#log-title").textContent = `Logs — ${name}`;
  $("#log-lines").replaceChildren();
  attachLogs();
}

// Tail the open viewer's service. When the tail ends (the core restarted, the link went
// silent) the pane says so, and the tail is taken up again once the core answers, with
// only the lines newer than the last one shown.
async function attachLogs() {
  const log = ui.log;
  if (!log || log.abort) return;
  const abort = new AbortController();
  log.abort = abort;
  const path = `/api/v1/services/${encodeURIComponent(log.name)}/logs`;
  let why;
  let retry = true;
  try {
    // No time limit of its own: a silent core is noticed by the live stream, which aborts this.
    const body = await api(`${path}?tail=200`, { signal: abort.signal });
    (body.lines || []).filter((l) => !log.lastTs || l.ts > log.lastTs).forEach(appendLog);
    await readEvents(`${path}/stream`, (ev, data) => { if (ev === "log") appendLog(data); }, abort.signal, TAIL_IDLE_MS);
    why = "the core closed it";
  } catch (e) {
    why = abort.why || e.message;
    // Refused or gone (a 4xx: the service was removed, the key changed): asking again won't help.
    retry = !(e.status >= 400 && e.status < 500);
  }
  if (abort.why === "closed" || ui.log !== log) return;
  log.abort = null;
  appendLog({ stream: "stderr", line: `[log stream ended: ${why}${retry ? "; it resumes when the core answers" : ""}]` });
  // The live stream re-attaches on reconnect; if it never dropped, try again here.
  if (retry) setTimeout(() => { if (ui.connected && ui.log === log) attachLogs(); }, 2000);
}

function closeLogs() {
  if (ui.log) interrupt(ui.log.abort, "closed");
  ui.log = null;
  $("#log-viewer").hidden = true;
}

$("#log-close").addEventListener("click", closeLogs);

// ---------- system ----------

function sparkline(canvas, values, max) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * dpr, h = canvas.clientHeight * dpr;
  if (!w || !h) return;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const pts = values.filter((v) => v != null);
  if (pts.length < 2) return;
  const top = max || Math.max(...pts, 1);
  ctx.strokeStyle = "#5b8def";
  ctx.lineWidth = 1.5 * dpr;
  ctx.beginPath();
  values.forEach((v, i) => {
    if (v == null) return;
    const x = (i / (values.length - 1)) * w;
    const y = h - (v / top) * (h - 2 * dpr) - dpr;
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function metricTile(id, label) {
  return el("div", { class: "metric", id }, el("div", { class: "label", text: label }), el("div", { class: "value", text: "—" }), el("canvas"));
}

function ensureSystemTiles() {
  const box = $("#system");
  if (box.childElementCount) return;
  box.append(
    metricTile("m-gpu", "GPU"),
    metricTile("m-vram", "VRAM"),
    metricTile("m-temp", "GPU temperature"),
    metricTile("m-power", "GPU power"),
    metricTile("m-cpu", "CPU"),
    metricTile("m-ram", "RAM"),
  );
}

function setTile(id, text, series, max) {
  const tile = document.getElementById(id);
  if (!tile) return;
  tile.querySelector(".value").textContent = text;
  sparkline(tile.querySelector("canvas"), series, max);
}

// A system document (`/api/v1/system` or a snapshot) or a history sample, as one point.
function systemPoint(doc) {
  const gpu = (doc.gpu && doc.gpu.devices && doc.gpu.devices[0]) || (doc.gpus && doc.gpus[0]) || null;
  return { ts: doc.sampled_at || doc.ts, cpu: doc.cpu_percent, memUsed: doc.memory_used_bytes, memTotal: doc.memory_total_bytes, gpu };
}

function renderSystem(doc, remember = true) {
  if (!doc || doc.cpu_percent == null) return;
  ensureSystemTiles();
  const point = systemPoint(doc);
  const last = ui.history[ui.history.length - 1];
  if (remember && (!last || last.ts !== point.ts)) ui.history.push(point);
  while (ui.history.length > HISTORY_POINTS) ui.history.shift();
  const h = ui.history;
  const gpu = point.gpu;
  lastGpu = gpu;
  $("#gpu-note").hidden = !!gpu;
  $("#gpu-note").textContent = gpu ? "" : `GPU: ${doc.gpu?.reason || "no NVIDIA GPU detected"}`;
  setTile("m-gpu", gpu ? `${fmt.pct(gpu.utilization_percent)}${gpu.name ? " · " + gpu.name : ""}` : "—", h.map((p) => p.gpu?.utilization_percent), 100);
  setTile("m-vram", gpu ? `${fmt.bytes(gpu.memory_used_bytes)} / ${fmt.bytes(gpu.memory_total_bytes)}` : "—", h.map((p) => p.gpu?.memory_used_bytes), gpu?.memory_total_bytes);
  setTile("m-temp", gpu?.temperature_c != null ? `${gpu.temperature_c} °C` : "—", h.map((p) => p.gpu?.temperature_c), 100);
  setTile("m-power", gpu?.power_w != null ? `${Math.round(gpu.power_w)} W` : "—", h.map((p) => p.gpu?.power_w));
  setTile("m-cpu", fmt.pct(point.cpu), h.map((p) => p.cpu), 100);
  setTile("m-ram", `${fmt.bytes(point.memUsed)} / ${fmt.bytes(point.memTotal)}`, h.map((p) => p.memUsed), point.memTotal);
}

async function loadSystemHistory() {
  const body = await api("/api/v1/system");
  ui.history = (body.history || []).slice(-HISTORY_POINTS).map(systemPoint);
  renderSystem(body);
}

// ---------- gateway ----------

function renderUsage(summary, mode, paused) {
  const s = summary || {};
  $("#gateway-stats").replaceChildren(
    ...[
      ["generator mode", `${mode}${paused ? " · paused" : ""}`],
      ["requests / min", s.requests_per_minute != null ? s.requests_per_minute.toFixed(1) : "—"],
      ["error rate", s.requests ? fmt.pct(s.error_rate * 100) : "—"],
      ["p50 / p95", s.requests ? `${fmt.ms(s.p50_ms)} / ${fmt.ms(s.p95_ms)}` : "—"],
    ].map(([label, value]) => el("div", { class: "metric" }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value }))),
  );
}

function renderRecent(rows) {
  $("#recent-requests tbody").replaceChildren(
    ...rows.map((r) =>
      el(
        "tr",
        {},
        el("td", { text: fmt.time(r.ts) }),
        el("td", { text: r.kind === "media" ? `media / ${r.task || ""}` : `${r.role || ""} / ${r.task || ""}` }),
        el("td", { text: `${r.provider || "—"} / ${r.model || "—"}` }),
        el("td", { text: r.total_tokens ?? "—" }),
        el("td", { text: Math.round(r.latency_ms) }),
        el("td", { text: r.error_code || r.status }),
      ),
    ),
  );
  if (!rows.length) $("#recent-requests tbody").append(el("tr", {}, el("td", { colSpan: 6, class: "empty", text: "No requests yet." })));
}

async function refreshRecent() {
  const body = await api("/api/v1/usage?limit=15");
  renderRecent(body.requests || []);
}

// ---------- models ----------

// The last GPU sample (from the system panel), for "what fills the card".
let lastGpu = null;

function actionButton(text, cls, onClick) {
  const b = el("button", { type: "button", class: `small ${cls || ""}`.trim(), text });
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onClick(b);
    } catch (e) {
      modelNote(`${text} failed: ${e.message}`, true);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

function modelNote(text, bad) {
  const n = $("#model-note");
  n.textContent = text;
  n.classList.toggle("bad", !!bad);
}

const modelPath = (provider, model) => `/api/v1/models/${encodeURIComponent(provider)}/${model.split("/").map(encodeURIComponent).join("/")}`;

async function startPull(provider, model) {
  const p = await api(`/api/v1/models/${encodeURIComponent(provider)}/pull`, { method: "POST", body: JSON.stringify({ model }) });
  modelNote(p.joined ? `${model}: joined the pull already running` : `${model}: pull started`);
  watchPulls();
}

// Delete asks first, naming the routes that use the model (the API refuses with them).
function confirmDelete(row, provider, model) {
  const cell = row.querySelector("td.actions");
  const ask = async () => {
    try {
      await api(modelPath(provider, model), { method: "DELETE" });
      modelNote(`${model} deleted from ${provider}`);
      return refreshModels();
    } catch (e) {
      if (e.code !== "MODEL_IN_USE") throw e;
      const keep = actionButton("Keep", "secondary", () => refreshModels());
      const go = actionButton("Delete anyway", "danger", async () => {
        await api(`${modelPath(provider, model)}?force=true`, { method: "DELETE" });
        modelNote(`${model} deleted from ${provider}`);
        return refreshModels();
      });
      cell.replaceChildren(el("span", { class: "confirm", text: `${e.message.split(";")[0]}. ` }), go, keep);
    }
  };
  const yes = actionButton("Confirm delete", "danger", ask);
  const no = actionButton("Keep", "secondary", () => refreshModels());
  cell.replaceChildren(el("span", { class: "confirm", text: `Delete ${model}? ` }), yes, no);
}

function modelTable(provider, models, missing, actionable) {
  const rows = models.map((m) => {
    const row = el(
      "tr",
      { class: m.loaded ? "loaded" : "", "data-model": m.name },
      el("td", { text: m.name }),
      el("td", { text: fmt.bytes(m.size_bytes) }),
      el("td", { text: [m.family, m.parameter_size].filter(Boolean).join(" ") || "—" }),
      el("td", { text: m.quantization || "—" }),
      el("td", { text: m.modified_at ? new Date(m.modified_at).toLocaleDateString() : "—" }),
      el("td", { text: m.loaded ? (m.size_vram != null ? `loaded, ${fmt.bytes(m.size_vram)} VRAM` : "loaded") : "" }),
      el("td", { class: "actions" }),
    );
    const actions = row.querySelector("td.actions");
    if (!actionable) return row;
    if (m.loaded) {
      actions.append(actionButton("Unload", "secondary", async () => {
        await api(`${modelPath(provider, m.name)}/unload`, { method: "POST" });
        modelNote(`${m.name} unloaded`);
        return refreshModels();
      }));
    } else {
      actions.append(actionButton("Load", "secondary", async () => {
        modelNote(`loading ${m.name}…`);
        await api(`${modelPath(provider, m.name)}/load`, { method: "POST" });
        modelNote(`${m.name} loaded`);
        return refreshModels();
      }));
    }
    actions.append(actionButton("Delete", "danger", async () => confirmDelete(row, provider, m.name)));
    return row;
  });
  for (const name of missing || []) {
    rows.push(
      el(
        "tr",
        { class: "missing", "data-model": name },
        el("td", { text: name }),
        el("td", { colSpan: 5, text: "missing: a route needs it" }),
        el("td", { class: "actions" }, ...(actionable ? [actionButton("Pull", "", () => startPull(provider, name))] : [])),
      ),
    );
  }
  // Seven columns: on a narrow window the table scrolls inside its card.
  return el("div", { class: "table-scroll" }, el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...["name", "size", "family", "quantisation", "modified", "loaded", ""].map((t) => el("th", { text: t })))),
    el("tbody", {}, ...rows),
  ));
}

// What fills the card: the loaded models' VRAM against the GPU's total (NVML).
function vramLine(models) {
  const used = models.filter((m) => m.loaded && m.size_vram != null).reduce((a, m) => a + m.size_vram, 0);
  const total = lastGpu?.memory_total_bytes;
  const names = models.filter((m) => m.loaded).map((m) => `${m.name} ${m.size_vram != null ? fmt.bytes(m.size_vram) : ""}`.trim());
  if (!names.length) return null;
  return el("p", { class: "vram", text: `Loaded: ${names.join(", ")} — ${fmt.bytes(used)} VRAM${total ? ` of ${fmt.bytes(total)} on the GPU` : ""}` });
}

function renderModels(body) {
  const box = $("#models");
  const parts = [];
  for (const inst of body.llm || []) {
    parts.push(el("h3", { text: inst.base_url ? `${inst.provider} (${inst.kind}) — ${inst.base_url}` : `${inst.provider} (${inst.kind})` }));
    if (inst.service_down) parts.push(el("p", { class: "empty", text: `service down: ${inst.service_down}` }));
    else if (inst.error) parts.push(el("p", { class: "empty", text: `unreachable: ${inst.error}` }));
    const actionable = inst.kind === "ollama" && !ui.readOnly;
    if (actionable && (inst.missing || []).length) {
      const all = actionButton(`Pull all missing (${inst.missing.length})`, "", async () => {
        for (const name of inst.missing) await startPull(inst.provider, name);
      });
      all.classList.add("pull-all");
      parts.push(el("p", {}, all));
    }
    const vram = vramLine(inst.models || []);
    if (vram) parts.push(vram);
    parts.push(modelTable(inst.provider, inst.models || [], inst.missing, actionable));
  }
  for (const inst of body.media || []) {
    parts.push(el("h3", { text: inst.base_url ? `${inst.provider} (${inst.kind}) — ${inst.base_url}` : `${inst.provider} (${inst.kind})` }));
    if (inst.error) parts.push(el("p", { class: "empty", text: `unreachable: ${inst.error}` }));
    for (const [folder, files] of Object.entries(inst.models || {})) {
      const text = files.map((f) => (typeof f === "string" ? f : f.size_bytes != null ? `${f.name} (${fmt.bytes(f.size_bytes)})` : f.name));
      parts.push(el("p", {}, el("strong", { text: `${folder}: ` }), document.createTextNode(text.length ? text.join(", ") : "none")));
    }
    for (const w of inst.workflows || []) {
      const missing = w.missing_models || [];
      parts.push(
        el(
          "p",
          { class: missing.length ? "workflow missing" : "workflow", "data-workflow": w.name },
          el("strong", { text: `workflow ${w.name}: ` }),
          document.createTextNode(
            missing.length
              ? `missing ${missing.map((f) => `${f.type} ${f.name}`).join(", ")}`
              : (w.requires || []).length
                ? `has its models (${w.requires.map((f) => f.name).join(", ")})`
                : "needs no model files",
          ),
        ),
      );
    }
  }
  box.replaceChildren(...(parts.length ? parts : [el("p", { class: "empty", text: "No model providers configured." })]));
}

async function refreshModels() {
  try {
    renderModels(await api("/api/v1/models"));
  } catch (e) {
    $("#models").replaceChildren(el("p", { class: "empty", text: `Models unavailable: ${e.message}` }));
  }
}

// ---------- pulls ----------

function renderPulls(pulls) {
  const box = $("#model-pulls");
  const shown = pulls.filter((p) => p.state === "running" || Date.now() - Date.parse(p.finished_at || 0) < 60_000);
  box.replaceChildren(
    ...shown.map((p) => {
      const pct = p.percent ?? 0;
      const detail = [
        p.state === "running" ? p.status : p.state,
        p.total_bytes ? `${fmt.bytes(p.completed_bytes)} / ${fmt.bytes(p.total_bytes)}` : "",
        p.bytes_per_s ? `${fmt.bytes(p.bytes_per_s)}/s` : "",
        p.eta_s != null && p.state === "running" ? `ETA ${Math.round(p.eta_s)} s` : "",
        p.error && p.state !== "cancelled" ? p.error : "",
      ].filter(Boolean);
      const row = el(
        "div",
        { class: `pull ${p.state}`, "data-pull": p.id, "data-model": p.model },
        el("span", { class: "pull-name", text: `${p.model} (${p.provider})` }),
        el("progress", { max: 100, value: pct }),
        el("span", { class: "pull-pct", text: `${pct.toFixed(1)} %` }),
        el("span", { class: "pull-detail", text: detail.join(" · ") }),
      );
      if (p.state === "running") {
        if (!ui.readOnly) row.append(actionButton("Cancel", "secondary", () => api(`/api/v1/models/pulls/${p.id}`, { method: "DELETE" }).then(watchPulls)));
      }
      return row;
    }),
  );
}

let pullTimer = null;
async function watchPulls() {
  clearTimeout(pullTimer);
  let running = false;
  try {
    const body = await api("/api/v1/models/pulls");
    renderPulls(body.pulls || []);
    running = (body.pulls || []).some((p) => p.state === "running");
    const finishedNow = (body.pulls || []).some((p) => p.state === "succeeded" && Date.now() - Date.parse(p.finished_at || 0) < 2_000);
    if (finishedNow) refreshModels();
  } catch (e) {
    modelNote(`pulls unavailable: ${e.message}`, true);
  }
  if (running) pullTimer = setTimeout(watchPulls, 500);
}

$("#models-refresh").addEventListener("click", refreshModels);
$("#model-pull-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const model = $("#model-pull-name").value.trim();
  const provider = $("#model-pull-provider").value.trim() || "ollama";
  if (model) startPull(provider, model).catch((e) => modelNote(`pull failed: ${e.message}`, true));
});

// ---------- events ----------

// The event filters, as the API takes them (empty: no filter).
function eventFilters() {
  return {
    service: $("#event-service").value,
    level: $("#event-level").value,
    actor: $("#event-actor").value,
  };
}

// Whether a live event passes the filters (the same rules as GET /api/v1/events).
function eventMatches(ev, f = eventFilters()) {
  if (f.service && ev.service !== f.service) return false;
  if (f.level && (ev.level || levelOf(ev.to)) !== f.level) return false;
  if (f.actor) {
    const a = ev.actor || "";
    if (a !== f.actor && !a.startsWith(`${f.actor} `)) return false;
  }
  return true;
}

function eventItem(ev) {
  const toClass = levelOf(ev.to) === "ok" ? "to-ok" : levelOf(ev.to) === "down" ? "to-down" : "";
  // A run of identical changes is one event with a count and its first/last time.
  const repeated = ev.count > 1
    ? el("span", {
      class: "count",
      title: `first ${fmt.time(ev.ts)}, last ${fmt.time(ev.last_ts)}`,
      text: `×${ev.count} since ${fmt.time(ev.ts)} (last ${fmt.time(ev.last_ts)})`,
    })
    : null;
  const mute = (label, kind) => el("button", {
    class: "secondary mute", type: "button", text: label,
    "aria-label": kind === "1h" ? `Mute ${ev.service} (${ev.topic}) for 1 h` : `Mute ${ev.service} (${ev.topic}) until it changes`,
    title: kind === "1h" ? `No notifications about ${ev.topic} for an hour` : `No notifications about ${ev.topic} until it changes`,
    "data-topic": ev.topic, "data-for": kind,
    onclick: () => muteTopic(ev.topic, kind),
  });
  return el(
    "li",
    { "data-id": ev.id, "data-level": ev.level || levelOf(ev.to), "data-count": ev.count || 1 },
    el("span", { class: "when", text: fmt.time(ev.last_ts || ev.ts) }),
    el("strong", { text: ev.service }),
    document.createTextNode(` ${ev.from || "—"} → `),
    el("span", { class: toClass, text: ev.to }),
    document.createTextNode(ev.reason ? ` — ${ev.reason}` : ""),
    ev.actor && !(ev.reason || "").includes(ev.actor) ? el("span", { class: "when", text: ` (${ev.actor})` }) : null,
    repeated,
    ev.topic && levelOf(ev.to) !== "ok" ? mute("mute 1 h", "1h") : null,
    ev.topic && levelOf(ev.to) !== "ok" ? mute("until it changes", "until_change") : null,
  );
}

function addEvent(ev) {
  if (!eventMatches(ev)) return;
  const list = $("#events");
  // A repeat arrives with the id of the event it is counted on: update that line in place
  // (its buttons stay clickable) and move it to the top.
  const old = ev.id != null ? list.querySelector(`li[data-id="${ev.id}"]`) : null;
  if (old) {
    if ((ev.count || 1) <= Number(old.dataset.count || 1)) return;
    const fresh = eventItem(ev);
    old.dataset.count = fresh.dataset.count;
    old.querySelector(".when").textContent = fresh.querySelector(".when").textContent;
    const count = fresh.querySelector(".count");
    const had = old.querySelector(".count");
    if (had) had.replaceWith(count);
    else old.insertBefore(count, old.querySelector("button.mute"));
    if (list.firstChild !== old) list.prepend(old);
    return;
  }
  list.prepend(eventItem(ev));
  while (list.childElementCount > 200) list.lastChild.remove();
}

async function loadEvents() {
  const q = new URLSearchParams({ limit: "50" });
  for (const [k, v] of Object.entries(eventFilters())) if (v) q.set(k, v);
  const body = await api(`/api/v1/events?${q}`);
  $("#events").replaceChildren(...(body.events || []).map(eventItem));
}

// The service filter lists the configured services (and the gateway alarm).
function updateEventServiceFilter(names) {
  const select = $("#event-service");
  const want = ["", ...names, "gateway"];
  const have = [...select.options].map((o) => o.value);
  if (want.join("\n") === have.join("\n")) return;
  const current = select.value;
  select.replaceChildren(...want.map((n) => el("option", { value: n, text: n || "all services" })));
  select.value = want.includes(current) ? current : "";
}

for (const id of ["#event-service", "#event-level", "#event-actor"]) {
  $(id).addEventListener("change", () => loadEvents().catch(reportError));
}

// ---------- notification mutes ----------

async function muteTopic(topic, kind) {
  try {
    await api("/api/v1/notifications/mutes", { method: "POST", body: JSON.stringify({ topic, for: kind }) });
    await refreshMutes();
  } catch (e) {
    pageNote(`mute ${topic}: ${e.message}`);
  }
}

async function unmuteTopic(topic) {
  try {
    await api(`/api/v1/notifications/mutes/${encodeURIComponent(topic)}`, { method: "DELETE" });
  } catch (e) {
    if (e.status !== 404) pageNote(`unmute ${topic}: ${e.message}`);
  }
  await refreshMutes();
}

function renderMutes(mutes) {
  const box = $("#mutes");
  box.hidden = mutes.length === 0;
  box.replaceChildren(
    mutes.length ? document.createTextNode("Notifications muted:") : "",
    ...mutes.map((m) => el(
      "span",
      { class: "muted-topic", "data-topic": m.topic },
      document.createTextNode(`${m.topic} ${m.for === "1h" ? `until ${fmt.time(m.until)}` : "until it changes"}` +
        (m.held_back ? ` (${m.held_back} held back) ` : " ")),
      el("button", { class: "secondary", type: "button", text: "unmute", onclick: () => unmuteTopic(m.topic) }),
    )),
  );
}

async function refreshMutes() {
  const body = await api("/api/v1/notifications/mutes");
  renderMutes(body.mutes || []);
}
setInterval(() => refreshMutes().catch(() => {}), 15000);

// ---------- status, mode, pause ----------

function renderStatus(st) {
  ui.lastStatus = st;
  $("#mode-select").value = st.generator_mode;
  $("#pause-button").textContent = st.paused ? "Resume gateway" : "Pause gateway";
  $("#status-list").replaceChildren(...definitionList([
    ["version", st.version],
    ["listening", st.bind],
    ["uptime", fmt.uptime(st.uptime_s)],
    ["config", st.config_file || "built-in defaults"],
    ["data", st.data_dir],
  ]));
  if (document.body.dataset.stale) return; // the health is unknown until reconnected
  const health = st.health || {};
  const pill = $("#health");
  pill.dataset.level = health.level || "unknown";
  pill.textContent = health.summary || health.level || "…";
}

$("#mode-select").addEventListener("change", async (e) => {
  try {
    await api("/api/v1/runtime", { method: "POST", body: JSON.stringify({ generator_mode: e.target.value }) });
  } catch (err) {
    pageNote(`Switch mode: ${err.message}`);
  }
  renderStatus(await api("/api/v1/status"));
});

$("#pause-button").addEventListener("click", async () => {
  try {
    const paused = !(ui.lastStatus && ui.lastStatus.paused);
    await api("/api/v1/runtime", { method: "POST", body: JSON.stringify({ paused }) });
    renderStatus(await api("/api/v1/status"));
  } catch (err) {
    pageNote(`Pause: ${err.message}`);
  }
});

$("#restart-all").addEventListener("click", async () => {
  try {
    await api("/api/v1/services/restart-all", { method: "POST" });
    await refreshServices();
  } catch (e) {
    pageNote(`Restart all: ${e.message}`);
  }
});

// ---------- storage and retention ----------

function renderStorage(body) {
  const f = body.figures || {};
  const r = body.retention || {};
  const days = (n) => (n ? `${n} d` : "forever");
  const work = body.work || {};
  const busy = (w) => (w ? `${w.running}/${w.max_concurrent} running, ${w.waiting} waiting, ${w.rejected} shed` : "—");
  $("#storage-list").replaceChildren(...definitionList([
    ["database", fmt.bytes(f.db_bytes)],
    ["usage log", `${f.usage_rows ?? "—"} requests (kept ${days(r.usage_days)})`],
    ["events", `${f.event_rows ?? "—"} (kept ${days(r.events_days)}, at most ${r.events_max_rows || "∞"})`],
    ["jobs", `${f.job_rows ?? "—"} (kept ${days(r.jobs_days)})`],
    ["images", `${f.media_rows ?? "—"} · ${fmt.bytes(f.media_bytes)} of ${r.media_max_bytes ? fmt.bytes(r.media_max_bytes) : "∞"} (kept ${days(r.media_days)})`],
    ["image work", busy(work.media)],
  ]));
  const s = body.last_sweep;
  $("#storage-sweep").textContent = s
    ? `Last sweep ${fmt.time(s.at)}: removed ${s.usage_rows} requests, ${s.event_rows} events, ${s.job_rows} jobs, ${s.media_rows} images (${fmt.bytes(s.media_bytes)}).`
    : "No retention sweep yet.";
}

async function refreshStorage() {
  renderStorage(await api("/api/v1/storage"));
}

setInterval(() => refreshStorage().catch(() => {}), 30000);

// ---------- end-to-end check ----------

function renderFlow(job) {
  const list = $("#e2e-steps");
  const items = (job.steps || []).map((s) =>
    el(
      "li",
      { "data-status": s.status, "data-step": s.name },
      el("span", { class: "mark" }),
      el("span", { text: s.name }),
      el("span", { text: fmt.ms(s.ms) }),
      el("span", { class: "who", text: `${s.role}/${s.task} · ${s.provider || "—"}/${s.model || "—"}${s.error ? " · " + (s.error.code || "") + " " + (s.error.message || "") : ""}` }),
    ),
  );
  if (job.current_step && job.status === "running") {
    items.push(el("li", { "data-status": "running", "data-step": job.current_step }, el("span", { class: "mark" }), el("span", { text: job.current_step }), el("span", { text: "" })));
  }
  list.replaceChildren(...items);
  const verdict = $("#e2e-verdict");
  const report = job.report;
  if (report) {
    const pass = report.ok && report.within_budget;
    verdict.className = pass ? "pass" : "fail";
    verdict.textContent = report.ok
      ? `${pass ? "PASS" : "OVER BUDGET"}: ${(report.total_ms / 1000).toFixed(2)} s of ${report.budget_s} s (${report.generator_mode})`
      : `FAIL at ${report.failed_step || "?"}: ${report.error?.message || ""}`;
    const url = report.result?.image?.url;
    if (url) {
      const link = $("#e2e-image-link");
      link.hidden = false;
      link.href = ownOrigin(url);
      $("#e2e-image").src = ownOrigin(url);
    }
  } else {
    verdict.className = "";
    verdict.textContent = `${job.status}… ${Math.round((job.progress || 0) * 100)} %`;
  }
}

// The check's URLs are built from server.public_url (a Tailscale name, say), which need not
// be this page's origin, and the page's CSP loads images from its own only. A file URL's
// signature covers its path and query, not its host, so the same path works from here.
function ownOrigin(url) {
  try {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}

const flowDone = (job) => !!job.report || (job.status !== "running" && job.status !== "queued");

function flowInterrupted(text) {
  $("#e2e-verdict").className = "fail";
  $("#e2e-verdict").textContent = text;
}

function finishFlow() {
  ui.flow = null;
  $("#e2e-run").disabled = false;
}

// Follow a check to its end. A stream can end without the final state (the core stopped,
// the link went silent): the job is then read again, now and on every reconnect.
async function followFlow(flow) {
  const abort = new AbortController();
  flow.abort = abort;
  let done = false;
  try {
    await readEvents(`/api/v1/flows/jobs/${encodeURIComponent(flow.id)}/events`, (name, job) => {
      if (name !== "job") return;
      renderFlow(job);
      done = flowDone(job);
    }, abort.signal, TAIL_IDLE_MS);
  } catch {
    // read again below
  }
  flow.abort = null;
  if (ui.flow !== flow) return;
  if (done) return finishFlow();
  await rereadFlow(flow);
}

async function rereadFlow(flow) {
  if (ui.flow !== flow || flow.abort || flow.rereading) return;
  flow.rereading = true;
  try {
    const job = await api(`/api/v1/flows/jobs/${encodeURIComponent(flow.id)}`);
    renderFlow(job);
    if (flowDone(job)) finishFlow();
    else followFlow(flow);
  } catch (e) {
    if (e.status === 404) {
      flowInterrupted("Check interrupted: the core restarted and has no record of it. Run it again.");
      finishFlow();
    } else {
      flowInterrupted(`Check interrupted: the core is unreachable (${e.message}); its result is read again when the core answers.`);
    }
  } finally {
    flow.rereading = false;
  }
}

$("#e2e-run").addEventListener("click", async () => {
  const button = $("#e2e-run");
  button.disabled = true;
  $("#e2e-image-link").hidden = true;
  try {
    const started = await api("/api/v1/flows/product-detail", { method: "POST", body: "{}" });
    ui.flow = { id: started.job_id, abort: null, rereading: false };
    renderFlow({ status: started.status, steps: [] });
    followFlow(ui.flow);
  } catch (e) {
    flowInterrupted(`Could not run the check: ${e.message}`);
    button.disabled = false;
  }
});

// ---------- ComfyUI's shared queue ----------

// The Desk's jobs and outside prompts (sent through /comfyui) share ComfyUI's one queue.
function renderComfyQueue(q) {
  const p = $("#comfy-queue");
  if (!q) {
    p.textContent = "";
    return;
  }
  const owners = { desk: "a Desk job", front: "an outside prompt", unknown: "a prompt sent to ComfyUI directly" };
  const parts = (q.instances || []).map((i) => {
    if (i.error) return `${i.instance}: queue unavailable (${i.error})`;
    const run = (i.running || [])[0];
    const now = run ? `running ${owners[run.owner] || run.owner}${run.who ? ` from ${run.who}` : ""}` : "idle";
    return `${i.instance}: ${now} · ${i.pending_total} waiting (${i.pending_outside} from outside)`;
  });
  p.textContent = `ComfyUI queue (${q.provider}) — ${parts.join("; ")}`;
}

// ---------- live stream ----------

function applySnapshot(snap) {
  if (snap.access === "read-only") setReadOnly(true);
  if (snap.status) renderStatus(snap.status);
  if (snap.services) renderServices(snap.services);
  if (snap.system) renderSystem(snap.system);
  if (snap.usage) renderUsage(snap.usage.summary, snap.usage.generator_mode, snap.usage.paused);
  if (snap.recent) renderRecent(snap.recent);
  if ("media_queue" in snap) renderComfyQueue(snap.media_queue);
}

async function initialLoad() {
  const st = await api("/api/v1/status");
  delete document.body.dataset.stale;
  renderStatus(st);
  // First: whether this key may see the services (the other panels depend on it).
  await refreshServices().catch(() => {});
  // watchPulls: pulls already running (started before a reload, or elsewhere) show too.
  const tasks = [loadSystemHistory(), loadEvents(), refreshMutes(), refreshRecent(), refreshModels(), refreshStorage(), watchPulls()];
  const usage = api("/api/v1/usage/summary").then((u) => renderUsage(u.summary, u.generator_mode, u.paused));
  await Promise.allSettled([...tasks, usage]);
}

// The live stream is the page's heartbeat: while it flows the page is connected; when it
// ends or goes silent, the other streams (log tail, check) are dropped too and taken up
// again on reconnect.
async function liveLoop() {
  let delay = 1000;
  for (;;) {
    try {
      await initialLoad();
      ui.connected = true;
      if (ui.readOnly) {
        setConnection("readonly", "connected, read-only");
        showBanner(READ_ONLY_TEXT, "info");
      } else {
        setConnection("up", "connected");
        showBanner("");
      }
      delay = 1000;
      attachLogs();
      if (ui.flow) rereadFlow(ui.flow);
      await readEvents("/api/v1/stream", (name, data) => {
        if (name === "snapshot") applySnapshot(data);
        else if (name === "event") addEvent(data);
      }, undefined, LIVE_IDLE_MS);
      // The core closed the stream (shutting down): try again.
      throw new Error("stream closed");
    } catch (e) {
      reportError(e);
      if (ui.log) interrupt(ui.log.abort, "core unreachable");
      if (ui.flow) interrupt(ui.flow.abort, "core unreachable");
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// ---------- key dialog ----------

$("#key-button").addEventListener("click", () => {
  $("#key-input").value = localStorage.getItem(KEY_STORAGE) || "";
  $("#key-dialog").showModal();
});
// Cancel is a plain button: Enter submits the form with its first submit button, Save.
$("#key-cancel").addEventListener("click", () => $("#key-dialog").close("cancel"));
$("#key-dialog").addEventListener("close", () => {
  if ($("#key-dialog").returnValue === "save") {
    const key = $("#key-input").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    location.reload();
  }
});

liveLoop();
