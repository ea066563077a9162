// Sparklio Desk dashboard: plain JS, no build step. Reads the core's JSON APIs.
"use strict";

const KEY_STORAGE = "sparklio-desk.admin-key";
const $ = (sel) => document.querySelector(sel);

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, init = {}) {
  const resp = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error(body?.error?.message || `HTTP ${resp.status}`);
    err.status = resp.status;
    err.code = body?.error?.code;
    throw err;
  }
  return body;
}

function setConnection(state, text) {
  const el = $("#conn");
  el.dataset.state = state;
  el.textContent = text;
}

function showBanner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  return td;
}

function fillTable(selector, rows, columns) {
  const body = $(`${selector} tbody`);
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(...columns.map((c) => cell(r[c])));
    return tr;
  }));
}

function formatUptime(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function renderStatus(st) {
  $("#mode").textContent = `${st.generator_mode} mode${st.paused ? " · paused" : ""}`;
  const list = $("#status-list");
  const items = [
    ["version", st.version],
    ["listening", st.bind],
    ["uptime", formatUptime(st.uptime_s)],
    ["config", st.config_file || "built-in defaults"],
    ["data", st.data_dir],
  ];
  list.replaceChildren(...items.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
  fillTable("#llm-providers", st.providers.llm, ["name", "kind", "base_url", "default_model"]);
  fillTable("#media-providers", st.providers.media, ["name", "kind", "base_url"]);
  const services = $("#services");
  if (!st.services.length) {
    services.innerHTML = '<p class="empty">No services configured. Add [[services]] to the config file.</p>';
  } else {
    services.replaceChildren(...st.services.map((s) => {
      const div = document.createElement("div");
      div.className = "service";
      div.dataset.name = s.name;
      div.textContent = `${s.name} (${s.kind})`;
      return div;
    }));
  }
}

async function refresh() {
  try {
    const st = await api("/api/v1/status");
    setConnection("up", "connected");
    showBanner("");
    renderStatus(st);
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      setConnection("down", "key needed");
      showBanner("This dashboard is opened from another machine: enter an admin key (Key button).");
    } else {
      setConnection("down", "core unreachable");
      showBanner(`Sparklio Desk core is unreachable: ${e.message}. Retrying…`);
    }
  }
}

$("#key-button").addEventListener("click", () => {
  $("#key-input").value = localStorage.getItem(KEY_STORAGE) || "";
  $("#key-dialog").showModal();
});
$("#key-dialog").addEventListener("close", () => {
  if ($("#key-dialog").returnValue === "save") {
    const key = $("#key-input").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    refresh();
  }
});

refresh();
setInterval(refresh, 5000);
