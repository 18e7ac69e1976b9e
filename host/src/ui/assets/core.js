// What every page shares: the API client (the signed-in key as a Bearer
// header), DOM building without HTML strings (agents' output is untrusted),
// the hash router, formatting, and live streams opened with stream tokens.

const KEY = "warden.key";

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/// Thrown by `api` when the page that called it was left meanwhile: a page
/// that has been navigated away from never draws over the next one.
export class Stale extends Error {}

/// Which page is current; `leave()` moves it on.
let generation = 0;

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

/// Calls the API; the parsed body, or throws an ApiFailure with its typed error.
export async function api(path, { method = "GET", body, form, raw } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["Authorization"] = `Bearer ${key}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const page = generation;
  const response = await fetch(path, { method, headers, body: payload });
  if (page !== generation) throw new Stale(path);
  if (raw && response.ok) return response;
  const text = await response.text();
  if (page !== generation) throw new Stale(path);
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) {
    const error = (json && json.error) || {};
    if (response.status === 401) showSignIn(error.message);
    throw new ApiFailure(response.status, error.code || `http_${response.status}`, error.message || text || response.statusText);
  }
  return json;
}

/// An element: h("a", {href: "#/x", class: "y", onclick: f}, "text", child...).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function main() {
  return document.getElementById("main");
}

/// Replaces an element's children (arrays flattened; null, undefined and
/// false left out).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/// Replaces the page's content.
export function render(...children) {
  fill(main(), ...children);
}

let toastTimer;
export function toast(message, bad = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

/// Runs an action from a button; a failure is shown, not thrown.
export async function act(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (e) {
    if (e instanceof Stale) return undefined;
    toast(e instanceof ApiFailure ? `${e.code}: ${e.message}` : e.message || String(e), true);
  } finally {
    if (button) button.disabled = false;
  }
}

export const TERMINAL = new Set(["completed", "failed", "cancelled", "rejected"]);
export const STATUSES = ["pending", "queued", "running", "completed", "failed", "cancel_requested", "cancelled", "awaiting_approval", "rejected"];
export const TRIGGERS = ["api", "schedule", "agent", "chat", "mcp", "webhook", "retry"];

export function badge(status) {
  return h("span", { class: `badge ${status}`, dataset: { status } }, status.replace("_", " "));
}

export function liveBadge() {
  return h("span", { class: "live", title: "Streaming" }, "Live");
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function cost(usd) {
  if (!usd) return "$0";
  return usd < 0.01 ? `$${usd.toFixed(6)}` : `$${usd.toFixed(4)}`;
}

export function json(value) {
  return h("pre", { class: "mono" }, JSON.stringify(value, null, 2));
}

/// The hash route: ["executions", "exec_…"] and its query.
export function location() {
  const [path, query = ""] = window.location.hash.replace(/^#\/?/, "").split("?");
  const decode = (part) => { try { return decodeURIComponent(part); } catch { return part; } };
  return { parts: path.split("/").filter(Boolean).map(decode), query: new URLSearchParams(query) };
}

export function go(hash) {
  window.location.hash = hash;
}

/// What a page leaves running (timers, streams), stopped when the page changes.
const cleanups = [];
export function onLeave(stop) {
  cleanups.push(stop);
}
export function leave() {
  generation += 1;
  while (cleanups.length) {
    try { cleanups.pop()(); } catch { /* already stopped */ }
  }
}

/// Calls `tick` every `ms` while the page stays.
export function every(ms, tick) {
  const timer = setInterval(tick, ms);
  onLeave(() => clearInterval(timer));
}

/// Follows an execution's events live from after `after`: asks for a stream
/// token (the key never goes in a URL), opens an EventSource, and on an error
/// asks for a new token and resumes after the last event seen, backing off up
/// to 5 s; after 8 failures in a row it gives up. `onEvent(type, data, seq)`;
/// `onEnd(true)` after the terminal event, `onEnd(false)` on giving up.
/// Returns a function that stops it; leaving the page stops it too.
export function follow(id, after, onEvent, onEnd) {
  const TYPES = ["status", "log", "step", "content", "thinking", "tool_start", "tool_end", "artifact", "approval", "done", "error", "shutdown"];
  const page = generation;
  let last = after;
  let source = null;
  let stopped = false;
  let failures = 0;
  const retry = () => {
    failures += 1;
    if (failures >= 8) {
      stop();
      if (onEnd) onEnd(false);
      return;
    }
    setTimeout(open, Math.min(500 * failures, 5000));
  };
  const open = async () => {
    if (stopped || page !== generation) return;
    let grant;
    try {
      grant = await api(`/v1/executions/${encodeURIComponent(id)}/stream-token`, { method: "POST" });
    } catch (e) {
      if (!(e instanceof Stale)) retry();
      return;
    }
    if (stopped) return;
    source = new EventSource(`${grant.stream_url}&after=${last}`);
    source.onopen = () => { failures = 0; };
    for (const type of TYPES) {
      source.addEventListener(type, (message) => {
        const seq = Number(message.lastEventId || 0);
        if (seq && seq <= last) return;
        if (seq) last = seq;
        let data = null;
        try { data = JSON.parse(message.data); } catch { data = message.data; }
        onEvent(type, data && data.data !== undefined ? data.data : data, seq);
        if (type === "done" || type === "error") {
          stop();
          if (onEnd) onEnd(true);
        } else if (type === "shutdown") {
          source.close();
          setTimeout(open, 2000);
        }
      });
    }
    source.onerror = () => {
      source.close();
      if (!stopped) retry();
    };
  };
  const stop = () => {
    stopped = true;
    if (source) source.close();
  };
  open();
  onLeave(stop);
  return stop;
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  showSignIn("Signed out.");
}

let signingIn = false;
/// The sign-in form, shown when the API answers 401.
export function showSignIn(reason) {
  if (signingIn) return;
  signingIn = true;
  leave();
  const input = h("input", { type: "password", id: "api-key", placeholder: "wdn_…", autocomplete: "off" });
  const problem = h("p", { class: "error-text" }, reason && apiKey() ? reason : "");
  const submit = async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    signingIn = false;
    try {
      await api("/v1/agents");
      document.getElementById("sign-out").hidden = false;
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (e) {
      sessionStorage.removeItem(KEY);
      signingIn = true;
      problem.textContent = e.message;
    }
  };
  render(h("form", { class: "panel signin", onsubmit: submit },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (warden keys create). It stays in this tab only."),
    input, problem,
    h("button", { class: "primary", type: "submit", id: "sign-in" }, "Sign in")));
  input.focus();
}
