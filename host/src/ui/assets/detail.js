// An execution's page: its fields, input, output and error; the transcript
// (content, thinking, tool calls with arguments, results and durations,
// approvals); a steps waterfall; logs; artifacts with thumbnails; its open
// approvals with Approve and Reject; the raw record; and Stop, Retry, Make
// Repeatable and Continue as Chat. While it is queued, running or awaiting
// approval it follows the live stream (Live badge) and redraws as it goes.
// Stored events are read a page at a time and at most MAX_EVENTS at first, so
// a run with tens of thousands of events opens as fast as a small one.

import { api, h, fill, render, badge, liveBadge, when, duration, cost, json, go, act, every, follow, onLeave, toast, TERMINAL } from "./core.js";

const EVENT_PAGE = 1000;
const MAX_EVENTS = 3000;
const MAX_LOG_LINES = 2000;

export async function detailPage(id) {
  let record = await api(`/v1/executions/${encodeURIComponent(id)}`);
  const head = h("h1", {});
  const actions = h("div", { class: "actions" });
  const fields = h("div", { class: "panel fields", id: "fields" });
  const io = h("div", { id: "io" });
  const approvals = h("div", { id: "approvals" });
  const transcript = new Transcript();
  const waterfall = h("div", { class: "panel waterfall", id: "waterfall" });
  const logs = h("div", { class: "logs", id: "logs" });
  const artifacts = new Artifacts(id);
  const raw = h("details", { class: "panel" }, h("summary", {}, "Raw JSON"), h("div", {}));
  const more = h("div", {});
  const note = h("p", { class: "muted", id: "live-note" });

  // The buttons (and the Make Repeatable form) and the approval cards are
  // built again only when what they show changes, never under someone typing.
  let drawnStatus = null;
  const redraw = () => {
    const live = !TERMINAL.has(record.status);
    fill(head, h("a", { href: `#/agents/${record.agent_name}` }, record.agent_name), badge(record.status), live ? liveBadge() : null, h("span", { class: "muted mono" }, record.id));
    if (drawnStatus !== record.status) {
      drawnStatus = record.status;
      fill(actions, ...buttons(record, refresh));
    }
    fill(fields, ...facts(record));
    fill(io,
      h("h2", {}, "Input"), json(record.input),
      record.output !== null ? [h("h2", {}, "Output"), json(record.output)] : null,
      record.output_partial ? [h("h2", {}, "Partial output"), json(record.output_partial)] : null,
      record.error ? [h("h2", {}, "Error"), h("pre", { class: "mono error-text", id: "error" }, `${record.error.code}: ${record.error.message}`)] : null);
    fill(raw.lastChild, json(record));
  };
  const approvalCards = new ApprovalCards(approvals, () => refresh());
  const refresh = async () => {
    record = await api(`/v1/executions/${encodeURIComponent(id)}`);
    transcript.results(record.tool_calls);
    redraw();
    await approvalCards.load(record.id);
  };

  render(head, actions, fields, approvals, io,
    h("h2", {}, "Transcript"), transcript.el, more,
    h("h2", {}, "Steps"), waterfall,
    h("h2", {}, "Logs"), logs,
    h("h2", {}, "Artifacts"), artifacts.el,
    raw);
  redraw();
  approvalCards.load(record.id).catch(() => {});
  const steps = throttled(() => loadSteps(record, waterfall));
  steps();
  artifacts.load().catch(() => {});

  // Stored events first, a page at a time; then, if it is still going, live.
  const logLines = [];
  const onEvent = (type, data) => {
    transcript.add(type, data);
    if (type === "log") addLog(logs, logLines, data);
  };
  let last = 0;
  let shown = 0;
  let capped = false;
  for (;;) {
    const page = await api(`/v1/executions/${encodeURIComponent(id)}/events?after=${last}&limit=${EVENT_PAGE}`);
    for (const e of page.data) {
      onEvent(e.type, e.data);
      last = e.seq;
    }
    shown += page.data.length;
    if (!page.has_more) break;
    if (shown >= MAX_EVENTS && !new URLSearchParams(window.location.hash.split("?")[1] || "").has("events")) {
      capped = true;
      fill(more, h("button", { id: "more-events", onclick: () => go(`#/executions/${id}?events=all`) }, `Showing its first ${shown} events: show them all`));
      break;
    }
  }
  transcript.results(record.tool_calls);
  const live = !TERMINAL.has(record.status);
  if (logLines.length === 0 && !live) loadLogs(record, logs, logLines);
  performance.mark("warden:detail-rendered");
  if (!live) return;
  // A status event is shown at once; the record (read again shortly after,
  // and every few seconds while live) fills in the rest. A read that lags
  // behind the stream does not take the status back.
  let streamed = null;
  let pending = false;
  const reread = () => refresh().then(() => {
    if (streamed && !TERMINAL.has(record.status) && record.status !== streamed) {
      record.status = streamed;
      redraw();
    }
  }).catch(() => {});
  every(3000, () => { if (!TERMINAL.has(record.status)) reread(); });
  if (capped) {
    // Following would first replay every event past the cap: the record is
    // read every few seconds instead, until all events are asked for.
    fill(note, "Live updates of this run's events start when all its events are shown.");
    more.append(note);
    return;
  }
  follow(id, last, (type, data) => {
    onEvent(type, data);
    if (type === "step") steps();
    if (type === "artifact") artifacts.load().catch(() => {});
    if (type === "status" && data?.status && !TERMINAL.has(record.status)) {
      streamed = data.status;
      record.status = data.status;
      redraw();
    }
    if ((type === "status" || type === "approval") && !pending) {
      pending = true;
      setTimeout(() => { pending = false; reread(); }, 150);
    }
  }, (ended) => {
    streamed = null;
    if (!ended) {
      fill(note, "Live updates stopped (the stream could not be reopened); the record is still read every few seconds.");
      more.append(note);
    }
    refresh().then(() => { steps(); return artifacts.load(); }).catch(() => {});
  });
}

/// `run`, at most once a second (the last call within a second runs at its end).
function throttled(run) {
  let timer = null;
  let lastRun = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, lastRun + 1000 - Date.now());
    timer = setTimeout(() => {
      timer = null;
      lastRun = Date.now();
      run();
    }, wait);
  };
}

function facts(r) {
  const t = r.token_usage || {};
  const pairs = [
    ["Agent", h("a", { href: `#/agents/${r.agent_name}` }, `${r.agent_name} v${r.agent_version}`)],
    ["Status", r.status], ["Trigger", r.trigger], ["Priority", r.priority],
    ["Created", when(r.created_at)], ["Started", when(r.started_at)], ["Completed", when(r.completed_at)],
    ["Duration", duration(r.duration_ms)], ["Queued", duration(r.timing?.queued_ms)],
    ["First token", duration(r.timing?.first_token_ms)],
    ["Model", r.model_used || "—"], ["Provider", r.llm_provider || "—"],
    ["Tokens", `${t.total || 0} (${t.prompt || 0} in, ${t.completion || 0} out)${r.usage_estimated ? " est." : ""}`],
    ["Cost", cost(r.cost_usd)], ["Tool calls", r.n_tool_calls], ["Fuel", r.fuel_used ?? "—"],
    ["Peak memory", r.peak_memory_bytes ? `${(r.peak_memory_bytes / 1048576).toFixed(1)} MiB` : "—"],
    ["Attempt", r.attempt],
    ["Trace", h("span", { class: "mono" }, r.trace_id || "—")],
  ];
  const links = [
    ["Conversation", r.conversation_id, `#/conversations/${r.conversation_id}`],
    ["Schedule", r.schedule_id, "#/schedules"],
    ["Parent", r.parent_id, `#/executions/${r.parent_id}`],
    ["Retry of", r.retry_of, `#/executions/${r.retry_of}`],
    ["Retried by", r.retried_by, `#/executions/${r.retried_by}`],
  ];
  return [
    ...pairs.map(([k, v]) => h("div", {}, h("span", {}, k), v)),
    ...links.filter(([, v]) => v).map(([k, v, href]) => h("div", {}, h("span", {}, k), h("a", { href, class: "mono" }, v))),
  ];
}

function buttons(r, refresh) {
  const id = encodeURIComponent(r.id);
  const out = [];
  if (!TERMINAL.has(r.status) && r.status !== "cancel_requested") {
    out.push(h("button", { class: "danger", id: "stop", onclick: (e) => act(e.target, async () => { await api(`/v1/executions/${id}/cancel`, { method: "POST" }); toast("Stopping…"); await refresh(); }) }, "Stop"));
  }
  if (TERMINAL.has(r.status)) {
    out.push(h("button", { id: "retry", onclick: (e) => act(e.target, async () => { const next = await api(`/v1/executions/${id}/retry`, { method: "POST" }); go(`#/executions/${next.id}`); }) }, "Retry"));
  }
  const cron = h("input", { id: "repeat-cron", placeholder: "0 9 * * *", size: 12 });
  const zone = h("input", { id: "repeat-zone", placeholder: "UTC", size: 12, value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
  const repeat = h("form", { class: "filters", id: "repeat-form", hidden: true, onsubmit: (e) => { e.preventDefault(); act(e.submitter, async () => {
    const s = await api(`/v1/executions/${id}/schedule`, { method: "POST", body: { cron: cron.value.trim(), timezone: zone.value.trim() || undefined } });
    repeat.hidden = true;
    toast(`Schedule ${s.id}: ${s.description}`);
    go(`#/schedules?highlight=${s.id}`);
  }); } }, h("label", {}, "Cron", cron), h("label", {}, "Time zone", zone), h("button", { class: "primary", type: "submit", id: "repeat-save" }, "Create schedule"));
  out.push(h("button", { id: "repeat", onclick: () => { repeat.hidden = !repeat.hidden; cron.focus(); } }, "Make Repeatable"), repeat);
  if (r.status === "completed") {
    out.push(h("button", { id: "continue", onclick: (e) => act(e.target, async () => { const c = await api(`/v1/executions/${id}/continue`, { method: "POST" }); go(`#/conversations/${c.id}`); }) }, "Continue as Chat"));
  }
  return out;
}

/// The transcript: content and thinking run together as they stream; each
/// tool call is one item that its end and its result complete.
class Transcript {
  constructor() {
    this.empty = h("span", { class: "muted" }, "No model output or tool calls yet.");
    this.el = h("div", { class: "panel transcript", id: "transcript" }, this.empty);
    this.tools = new Map();
    this.open = null;
  }
  add(type, data) {
    if (!["content", "thinking", "tool_start", "tool_end", "approval", "error"].includes(type)) return;
    this.empty.remove();
    if (type === "content" || type === "thinking") {
      if (!this.open || this.open.kind !== type) {
        this.open = { kind: type, el: h("div", { class: `item ${type}` }) };
        this.el.append(this.open.el);
      }
      this.open.el.append(data?.delta ?? "");
      return;
    }
    if (type === "tool_start") {
      this.open = null;
      const item = { el: h("div", { class: "item tool", dataset: { tool: data.id } }), data, end: null, result: undefined };
      this.tools.set(data.id, item);
      this.el.append(item.el);
      this.drawTool(item);
    } else if (type === "tool_end") {
      const item = this.tools.get(data.id);
      if (item) { item.end = data; this.drawTool(item); }
    } else if (type === "approval") {
      this.open = null;
      this.el.append(h("div", { class: "item approval" }, `Approval ${data.status || "requested"}: ${data.title || data.id || ""}`));
    } else if (type === "error") {
      this.open = null;
      const e = data?.error || data;
      this.el.append(h("div", { class: "item error" }, `${e?.code || "error"}: ${e?.message || ""}`));
    }
  }
  results(calls) {
    for (const call of calls || []) {
      const item = this.tools.get(call.id);
      if (item && item.result === undefined) { item.result = call.error ? { error: call.error } : call.result; this.drawTool(item); }
    }
  }
  drawTool(item) {
    const end = item.end;
    fill(item.el,
      h("strong", {}, `Tool ${item.data.name}`), " ",
      h("span", { class: "muted" }, end ? duration(end.duration_ms) : "running…"),
      end?.error ? h("span", { class: "error-text" }, ` ${typeof end.error === "string" ? end.error : JSON.stringify(end.error)}`) : null,
      h("details", {}, h("summary", {}, "Arguments"), json(item.data.arguments)),
      item.result !== undefined ? h("details", {}, h("summary", {}, "Result"), json(item.result)) : null);
  }
}

function addLog(el, lines, line) {
  lines.push(line);
  el.append(h("div", { class: line.level }, `${line.ts?.slice(11, 23) || ""} ${line.level.padEnd(5)} ${line.message}`));
  if (el.childElementCount > MAX_LOG_LINES) el.firstElementChild.remove();
}

async function loadLogs(r, el, lines) {
  try {
    const page = await api(`/v1/executions/${encodeURIComponent(r.id)}/logs?limit=${MAX_LOG_LINES}`);
    for (const line of page.data) addLog(el, lines, line);
    if (!page.data.length) el.append(h("span", { class: "muted" }, "No logs."));
  } catch { /* shown elsewhere */ }
}

async function loadSteps(r, el) {
  const { data } = await api(`/v1/executions/${encodeURIComponent(r.id)}/steps`).catch(() => ({ data: [] }));
  if (!data.length) { fill(el, h("span", { class: "muted" }, "No steps.")); return; }
  const times = data.flatMap((s) => [Date.parse(s.started_at), Date.parse(s.ended_at || s.started_at)]);
  const start = Math.min(Date.parse(r.started_at || r.created_at), ...times);
  const end = Math.max(Date.parse(r.completed_at || 0) || 0, ...times);
  const span = Math.max(end - start, 1);
  fill(el, ...data.slice(0, 500).map((s) => {
    const from = Date.parse(s.started_at), to = Date.parse(s.ended_at || s.started_at);
    const bar = h("div", { class: `bar ${s.name}`, title: JSON.stringify(s.detail) });
    bar.style.left = `${((from - start) / span) * 100}%`;
    bar.style.width = `${Math.max(((to - from) / span) * 100, 0.3)}%`;
    const label = s.name === "tool" ? `tool ${s.detail?.name || ""}` : s.name === "llm" ? `llm ${s.detail?.model || ""}` : s.name;
    return h("div", { class: "step" }, h("span", { class: "mono" }, label), h("div", { class: "track" }, bar), h("span", { class: "muted" }, duration(to - from)));
  }));
}

/// A run's artifacts: each drawn once (images as thumbnails, fetched with the
/// key and shown as blobs, freed when the page is left).
class Artifacts {
  constructor(id) {
    this.id = id;
    this.el = h("div", { class: "thumbs", id: "artifacts" }, h("span", { class: "muted" }, "No artifacts."));
    this.drawn = new Set();
    this.urls = [];
    onLeave(() => this.urls.forEach((u) => URL.revokeObjectURL(u)));
  }
  async load() {
    const base = `/v1/executions/${encodeURIComponent(this.id)}/artifacts`;
    const { data } = await api(base);
    for (const a of data) {
      if (this.drawn.has(a.id)) continue;
      if (!this.drawn.size) this.el.replaceChildren();
      this.drawn.add(a.id);
      const url = `${base}/${encodeURIComponent(a.id)}`;
      const figure = h("figure", { dataset: { artifact: a.id } }, h("figcaption", {}, `${a.name} (${a.size} B)`));
      if (a.media_type.startsWith("image/")) {
        // An <img> cannot send the key: fetch the bytes and show them as a blob.
        this.blob(url).then((src) => figure.prepend(h("img", { src, alt: a.name, class: "thumb" }))).catch(() => {});
      }
      figure.append(h("button", { class: "link", onclick: () => this.blob(url).then((href) => h("a", { href, download: a.name }).click()) }, "Download"));
      this.el.append(figure);
    }
  }
  async blob(url) {
    const res = await api(url, { raw: true });
    const made = URL.createObjectURL(await res.blob());
    this.urls.push(made);
    return made;
  }
}

/// An execution's approval requests, drawn again only when one changes.
class ApprovalCards {
  constructor(el, after) {
    this.el = el;
    this.after = after;
    this.key = null;
  }
  async load(executionId) {
    const { data } = await api(`/v1/approvals?execution_id=${encodeURIComponent(executionId)}`);
    const key = data.map((a) => `${a.id}:${a.status}`).join(",");
    if (key === this.key) return;
    this.key = key;
    fill(this.el, ...data.map((a) => approvalCard(a, this.after)));
  }
}

/// One approval request, with Approve and Reject while it is pending.
export function approvalCard(a, after) {
  const comment = h("input", { placeholder: "Comment or reason (optional)", class: "comment", size: 30 });
  const data = h("textarea", { class: "approval-data", placeholder: '{"note": "…"} (optional JSON for the agent)' });
  const decide = (verdict) => (e) => act(e.target, async () => {
    const text = comment.value.trim();
    const body = {};
    if (text) body[verdict === "approve" ? "comment" : "reason"] = text;
    if (verdict === "approve" && data.value.trim()) {
      try { body.data = JSON.parse(data.value); } catch { throw new Error("The data is not JSON"); }
    }
    await api(`/v1/approvals/${encodeURIComponent(a.id)}/${verdict}`, { method: "POST", body: Object.keys(body).length ? body : undefined });
    toast(verdict === "approve" ? "Approved" : "Rejected");
    await after();
  });
  return h("div", { class: "panel approval-card", dataset: { approval: a.id } },
    h("strong", {}, a.title), " ", badge(a.status), " ",
    h("a", { href: `#/executions/${a.execution_id}`, class: "mono" }, a.execution_id),
    h("div", { class: "muted" }, `Asked ${when(a.created_at)}; expires ${when(a.expires_at)}`, a.decided_by_name ? `; decided by ${a.decided_by_name}` : ""),
    a.detail ? json(a.detail) : null,
    a.status === "pending"
      ? [h("details", {}, h("summary", {}, "Data for the agent (on approve)"), data),
        h("div", { class: "actions" }, comment,
          h("button", { class: "primary approve", onclick: decide("approve") }, "Approve"),
          h("button", { class: "danger reject", onclick: decide("reject") }, "Reject"))]
      : null);
}
