// The executions list: every agent's runs, newest first, filtered by agent,
// status, trigger and date range (all in the URL, so a view can be shared),
// paged by cursor, and kept current: the page on view is asked for again every
// two seconds and only the rows that changed are redrawn.

import { api, h, fill, render, badge, when, duration, cost, go, every, location, STATUSES, TRIGGERS, TERMINAL } from "./core.js";

const PAGE = 50;

/// `#/executions?agent=&status=&trigger=&from=&to=&after=`
export async function executionsPage() {
  const { query } = location();
  const filters = {
    agent: query.get("agent") || "",
    status: query.get("status") || "",
    trigger: query.get("trigger") || "",
    from: query.get("from") || "",
    to: query.get("to") || "",
    schedule: query.get("schedule") || "",
  };
  const after = query.get("after") || "";
  // The cursors of the pages before this one ("-" for the first), so "Newer" can go back.
  const back = (query.get("back") || "").split(",").filter(Boolean);

  const body = h("tbody", { id: "executions" });
  const pager = h("div", { class: "pager" });
  const agentSelect = h("select", { name: "agent", id: "filter-agent" }, h("option", { value: "" }, "All agents"));
  render(
    h("h1", {}, "Executions"),
    filterBar(filters, agentSelect),
    h("table", {},
      h("thead", {}, h("tr", {}, ["Status", "Agent", "Trigger", "Created", "Duration", "Tokens", "Cost", "Id"].map((t) => h("th", {}, t)))),
      body),
    pager);
  loadAgents(agentSelect, filters.agent);

  const params = new URLSearchParams({ limit: String(PAGE) });
  if (filters.agent) params.set("agent_id", filters.agent);
  if (filters.status) params.set("status", filters.status);
  if (filters.trigger) params.set("trigger", filters.trigger);
  if (filters.schedule) params.set("schedule_id", filters.schedule);
  if (filters.from) params.set("created_after", new Date(filters.from).toISOString());
  if (filters.to) params.set("created_before", new Date(filters.to).toISOString());
  if (after) params.set("after", after);

  const rows = new Map();
  const load = async () => {
    const page = await api(`/v1/executions?${params}`);
    draw(body, rows, page.data);
    fill(pager,
      back.length
        ? h("button", { id: "newer", onclick: () => navigate(filters, back.at(-1) === "-" ? "" : back.at(-1), back.slice(0, -1)) }, "← Newer")
        : null,
      page.has_more
        ? h("button", { id: "older", onclick: () => navigate(filters, page.next_cursor, [...back, after || "-"]) }, "Older →")
        : null,
      h("span", { class: "muted" }, page.data.length ? `${page.data.length} shown` : "No executions match."));
    return page;
  };
  await load();
  performance.mark("warden:executions-rendered");
  every(2000, () => load().catch(() => {}));
}

function filterBar(filters, agentSelect) {
  const status = h("select", { name: "status", id: "filter-status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
  const trigger = h("select", { name: "trigger", id: "filter-trigger" }, h("option", { value: "" }, "Any trigger"), TRIGGERS.map((t) => h("option", { value: t, selected: t === filters.trigger }, t)));
  const from = h("input", { type: "datetime-local", name: "from", id: "filter-from", value: filters.from });
  const to = h("input", { type: "datetime-local", name: "to", id: "filter-to", value: filters.to });
  const apply = (event) => {
    event.preventDefault();
    navigate({ agent: agentSelect.value, status: status.value, trigger: trigger.value, from: from.value, to: to.value, schedule: filters.schedule }, "", []);
  };
  return h("form", { class: "filters", onsubmit: apply, onchange: apply },
    h("label", {}, "Agent", agentSelect),
    h("label", {}, "Status", status),
    h("label", {}, "Trigger", trigger),
    h("label", {}, "From", from),
    h("label", {}, "To", to),
    h("button", { type: "button", onclick: () => navigate({}, "", []) }, "Clear"));
}

async function loadAgents(select, current) {
  try {
    const agents = await api("/v1/agents");
    for (const a of agents.data) select.append(h("option", { value: a.name, selected: a.name === current || a.id === current }, a.name));
  } catch { /* the list still works without names */ }
}

function navigate(filters, after, back) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  if (after) q.set("after", after);
  if (back.length) q.set("back", back.join(","));
  go(`#/executions?${q}`);
}

/// Redraws the rows, reusing those whose record did not change.
function draw(body, rows, executions) {
  const next = new Map();
  const ordered = executions.map((e) => {
    const key = `${e.status}|${e.completed_at}|${e.token_usage?.total}`;
    const old = rows.get(e.id);
    const tr = old && old.key === key ? old.tr : row(e);
    next.set(e.id, { key, tr });
    return tr;
  });
  rows.clear();
  for (const [id, v] of next) rows.set(id, v);
  fill(body, ...ordered);
}

function row(e) {
  const open = () => go(`#/executions/${e.id}`);
  return h("tr", { class: "row", dataset: { id: e.id, status: e.status }, onclick: open },
    h("td", {}, badge(e.status), TERMINAL.has(e.status) ? null : " ", TERMINAL.has(e.status) ? null : h("span", { class: "live" })),
    h("td", {}, e.agent_name),
    h("td", {}, e.trigger),
    h("td", {}, when(e.created_at)),
    h("td", {}, duration(e.duration_ms)),
    h("td", {}, e.token_usage?.total || 0),
    h("td", {}, cost(e.cost_usd)),
    h("td", { class: "mono" }, h("a", { href: `#/executions/${e.id}` }, e.id)));
}
