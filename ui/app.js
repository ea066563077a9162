// Sparklio Desk dashboard: plain JS, no build step, no framework.
// Everything comes from the core's JSON APIs; live updates arrive over Server-Sent
// Events (read with fetch, so the admin key can travel in a header).
"use strict";

const KEY_STORAGE = "sparklio-desk.admin-key";
const HISTORY_POINTS = 180; // sparkline length
const $ = (sel) => document.querySelector(sel);

const ui = {
  services: new Map(), // name -> card element
  logAbort: null,
  history: [], // system samples, oldest first
  lastStatus: null,
};

// ---------- HTTP ----------

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, init = {}) {
  const resp = await fetch(path, {
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
// Resolves when the stream ends, rejects on HTTP or network errors.
async function readEvents(path, onEvent, signal) {
  const resp = await fetch(path, { headers: { ...authHeaders(), Accept: "text/event-stream" }, signal });
  if (!resp.ok) {
    const body = await resp.json().catch(() => null);
    const err = new Error(body?.error?.message || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
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
    else if (k.startsWith("data-")) node.setAttribute(k, v);
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

function showBanner(text) {
  const b = $("#banner");
  b.hidden = !text;
  b.textContent = text || "";
}

function reportError(e) {
  if (e.status === 401 || e.status === 403) {
    setConnection("down", "key needed");
    showBanner("This dashboard is opened from another machine: enter an admin key (Key button).");
  } else {
    setConnection("down", "core unreachable");
    showBanner(`Sparklio Desk core is unreachable (${e.message}). Reconnecting…`);
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
  card.append(
    el("div", { class: "title" }, el("span", { class: "name", text: svc.name }), el("span", { class: "state" })),
    el("dl"),
    el("div", { class: "error" }),
    el(
      "div",
      { class: "actions" },
      ...["start", "stop", "restart"].map((action) =>
        el("button", { type: "button", class: action === "restart" ? "" : "secondary", text: action[0].toUpperCase() + action.slice(1), "data-action": action, onclick: () => serviceAction(svc.name, action) }),
      ),
      el("button", { type: "button", class: "secondary", text: "Logs", onclick: () => openLogs(svc.name) }),
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
}

async function serviceAction(name, action) {
  const card = ui.services.get(name);
  const buttons = card ? [...card.querySelectorAll("button[data-action]")] : [];
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api(`/api/v1/services/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    await refreshServices();
  } catch (e) {
    alert(`${action} ${name}: ${e.message}`);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function refreshServices() {
  const body = await api("/api/v1/services");
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
  const pre = $("#log-lines");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const line = el("span", { class: entry.stream === "stderr" ? "stderr" : "", text: `${entry.line ?? entry}\n` });
  pre.append(line);
  while (pre.childNodes.length > 2000) pre.firstChild.remove();
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

async function openLogs(name) {
  if (ui.logAbort) ui.logAbort.abort();
  const abort = new AbortController();
  ui.logAbort = abort;
  $("#log-viewer").hidden = false;
  $("#log-title").textContent = `Logs — ${name}`;
  $("#log-lines").replaceChildren();
  const path = `/api/v1/services/${encodeURIComponent(name)}/logs`;
  try {
    const body = await api(`${path}?tail=200`);
    (body.lines || []).forEach(appendLog);
    await readEvents(`${path}/stream`, (ev, data) => { if (ev === "log") appendLog(data); }, abort.signal);
  } catch (e) {
    if (e.name !== "AbortError") appendLog({ stream: "stderr", line: `[log stream ended: ${e.message}]` });
  }
}

$("#log-close").addEventListener("click", () => {
  if (ui.logAbort) ui.logAbort.abort();
  $("#log-viewer").hidden = true;
});

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
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...["name", "size", "family", "quantisation", "modified", "loaded", ""].map((t) => el("th", { text: t })))),
    el("tbody", {}, ...rows),
  );
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
    if (inst.kind === "ollama" && (inst.missing || []).length) {
      const all = actionButton(`Pull all missing (${inst.missing.length})`, "", async () => {
        for (const name of inst.missing) await startPull(inst.provider, name);
      });
      all.classList.add("pull-all");
      parts.push(el("p", {}, all));
    }
    const vram = vramLine(inst.models || []);
    if (vram) parts.push(vram);
    parts.push(modelTable(inst.provider, inst.models || [], inst.missing, inst.kind === "ollama"));
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
        row.append(actionButton("Cancel", "secondary", () => api(`/api/v1/models/pulls/${p.id}`, { method: "DELETE" }).then(watchPulls)));
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
    alert(`mute ${topic}: ${e.message}`);
  }
}

async function unmuteTopic(topic) {
  try {
    await api(`/api/v1/notifications/mutes/${encodeURIComponent(topic)}`, { method: "DELETE" });
  } catch (e) {
    if (e.status !== 404) alert(`unmute ${topic}: ${e.message}`);
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
  const health = st.health || {};
  const pill = $("#health");
  pill.dataset.level = health.level || "unknown";
  pill.textContent = health.summary || health.level || "…";
}

$("#mode-select").addEventListener("change", async (e) => {
  try {
    await api("/api/v1/runtime", { method: "POST", body: JSON.stringify({ generator_mode: e.target.value }) });
  } catch (err) {
    alert(`Switch mode: ${err.message}`);
  }
  renderStatus(await api("/api/v1/status"));
});

$("#pause-button").addEventListener("click", async () => {
  try {
    const paused = !(ui.lastStatus && ui.lastStatus.paused);
    await api("/api/v1/runtime", { method: "POST", body: JSON.stringify({ paused }) });
    renderStatus(await api("/api/v1/status"));
  } catch (err) {
    alert(`Pause: ${err.message}`);
  }
});

$("#restart-all").addEventListener("click", async () => {
  try {
    await api("/api/v1/services/restart-all", { method: "POST" });
    await refreshServices();
  } catch (e) {
    alert(`Restart all: ${e.message}`);
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
      link.href = url;
      $("#e2e-image").src = url;
    }
  } else {
    verdict.className = "";
    verdict.textContent = `${job.status}… ${Math.round((job.progress || 0) * 100)} %`;
  }
}

$("#e2e-run").addEventListener("click", async () => {
  const button = $("#e2e-run");
  button.disabled = true;
  $("#e2e-image-link").hidden = true;
  try {
    const started = await api("/api/v1/flows/product-detail", { method: "POST", body: "{}" });
    await readEvents(started.events_url, (name, job) => { if (name === "job") renderFlow(job); });
  } catch (e) {
    $("#e2e-verdict").className = "fail";
    $("#e2e-verdict").textContent = `Could not run the check: ${e.message}`;
  } finally {
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
  if (snap.status) renderStatus(snap.status);
  if (snap.services) renderServices(snap.services);
  if (snap.system) renderSystem(snap.system);
  if (snap.usage) renderUsage(snap.usage.summary, snap.usage.generator_mode, snap.usage.paused);
  if (snap.recent) renderRecent(snap.recent);
  if ("media_queue" in snap) renderComfyQueue(snap.media_queue);
}

async function initialLoad() {
  const st = await api("/api/v1/status");
  renderStatus(st);
  const tasks = [refreshServices(), loadSystemHistory(), loadEvents(), refreshMutes(), refreshRecent(), refreshModels(), refreshStorage()];
  const usage = api("/api/v1/usage/summary").then((u) => renderUsage(u.summary, u.generator_mode, u.paused));
  await Promise.allSettled([...tasks, usage]);
}

async function liveLoop() {
  let delay = 1000;
  for (;;) {
    try {
      await initialLoad();
      setConnection("up", "connected");
      showBanner("");
      delay = 1000;
      await readEvents("/api/v1/stream", (name, data) => {
        if (name === "snapshot") applySnapshot(data);
        else if (name === "event") addEvent(data);
      });
      // The core closed the stream (shutting down): try again.
      throw new Error("stream closed");
    } catch (e) {
      reportError(e);
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
$("#key-dialog").addEventListener("close", () => {
  if ($("#key-dialog").returnValue === "save") {
    const key = $("#key-input").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    location.reload();
  }
});

liveLoop();
