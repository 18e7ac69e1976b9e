// The other pages: agents (list, deploy by upload; one agent's Tasks tab,
// versions and manifest), the approvals inbox, schedules, and conversations
// as a chat view.

import { api, h, fill, render, badge, liveBadge, when, duration, json, go, act, every, follow, toast, location, TERMINAL } from "./core.js";
import { approvalCard } from "./detail.js";

export async function agentsPage() {
  const { data } = await api("/v1/agents");
  const component = h("input", { type: "file", id: "deploy-component", accept: ".wasm", required: true });
  const manifest = h("textarea", { id: "deploy-manifest", placeholder: '{"name": "my-agent", "description": "…"}', required: true });
  const deploy = (event) => {
    event.preventDefault();
    act(event.submitter, async () => {
      const form = new FormData();
      form.append("component", component.files[0]);
      form.append("manifest", manifest.value);
      const made = await api("/v1/agents", { method: "POST", form });
      const warnings = (made.warnings || []).join("; ");
      toast(`Deployed ${made.agent.name} v${made.version.version}${warnings ? `. Warnings: ${warnings}` : ""}`, Boolean(warnings));
      go(`#/agents/${made.agent.name}`);
    });
  };
  render(
    h("h1", {}, "Agents"),
    h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Latest", "Description", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", { id: "agents" }, data.map((a) => h("tr", { class: "row", dataset: { agent: a.name }, onclick: () => go(`#/agents/${a.name}`) },
        h("td", {}, h("a", { href: `#/agents/${a.name}` }, a.name)),
        h("td", {}, `v${a.latest_version}${a.latest?.label ? ` (${a.latest.label})` : ""}`),
        h("td", {}, a.description || ""),
        h("td", {}, when(a.updated_at)))))),
    h("h2", {}, "Deploy"),
    h("form", { class: "panel", id: "deploy", onsubmit: deploy },
      h("p", { class: "muted" }, "A WASI component (.wasm) of the agent world and its manifest; the same name makes a new version."),
      component, h("div", {}, manifest), h("button", { class: "primary", type: "submit" }, "Deploy")));
}

export async function agentPage(name) {
  const agent = await api(`/v1/agents/${encodeURIComponent(name)}`);
  const { query } = location();
  const tab = query.get("tab") || "tasks";
  const tabs = [["tasks", "Tasks"], ["versions", "Versions"], ["manifest", "Manifest"]];
  const body = h("div", {});
  render(
    h("h1", {}, agent.name, h("span", { class: "muted" }, `v${agent.latest_version}`)),
    h("p", { class: "muted" }, agent.description || ""),
    h("div", { class: "tabs" }, tabs.map(([key, label]) => h("button", { class: key === tab ? "current" : "", dataset: { tab: key }, onclick: () => go(`#/agents/${name}?tab=${key}`) }, label))),
    body);
  if (tab === "versions") {
    body.append(h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Label", "Component", "Size", "Deployed"].map((t) => h("th", {}, t)))),
      h("tbody", {}, (agent.versions || [agent.latest]).map((v) => h("tr", {},
        h("td", {}, `v${v.version}`), h("td", {}, v.label || ""), h("td", { class: "mono" }, v.component_hash?.slice(0, 16)),
        h("td", {}, `${Math.round((v.component_size || 0) / 1024)} KiB`), h("td", {}, when(v.created_at)))))));
  } else if (tab === "manifest") {
    body.append(json(agent.latest?.manifest), h("h2", {}, "Limits"), json(agent.latest?.limits));
  } else {
    tasksTab(agent, body);
  }
}

/// Send a task (with a model of the agent's) and watch its runs, live.
function tasksTab(agent, body) {
  const input = h("textarea", { id: "task-input" }, "{}");
  const models = agent.latest?.manifest?.models?.length ? agent.latest.manifest.models : ["scripted"];
  const model = h("select", { id: "task-model" },
    models.map((m, i) => h("option", { value: i === 0 ? "" : m }, i === 0 ? `${m} (default)` : m)));
  const history = h("tbody", { id: "task-history" });
  const send = (event) => {
    event.preventDefault();
    act(event.submitter, async () => {
      let value;
      try { value = JSON.parse(input.value); } catch { value = input.value; }
      const request = { input: value, mode: "async" };
      if (model.value) request.model = model.value;
      const made = await api(`/v1/agents/${encodeURIComponent(agent.name)}/execute`, { method: "POST", body: request });
      toast(`Queued ${made.id}`);
      await load();
    });
  };
  const load = async () => {
    const { data } = await api(`/v1/agents/${encodeURIComponent(agent.name)}/executions?limit=20`);
    fill(history, ...data.map((e) => h("tr", { class: "row", dataset: { id: e.id, status: e.status }, onclick: () => go(`#/executions/${e.id}`) },
      h("td", {}, badge(e.status), " ", TERMINAL.has(e.status) ? null : liveBadge()),
      h("td", {}, when(e.created_at)), h("td", {}, duration(e.duration_ms)),
      h("td", { class: "mono" }, e.model_used || e.model || ""),
      h("td", { class: "mono" }, summary(e.output ?? e.error)))));
  };
  body.append(
    h("form", { class: "panel", id: "task-form", onsubmit: send },
      h("label", {}, "Input (JSON, or text)"), input,
      h("label", {}, "Model"), model,
      h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", id: "task-send" }, "Send task"))),
    h("h2", {}, "History"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Status", "Created", "Duration", "Model", "Output"].map((t) => h("th", {}, t)))), history));
  load().catch(() => {});
  every(1500, () => load().catch(() => {}));
}

function summary(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

export async function approvalsPage() {
  const { query } = location();
  const status = query.get("status") || "pending";
  const list = h("div", { id: "approval-list" });
  const load = async () => {
    const { data, has_more } = await api(`/v1/approvals?status=${encodeURIComponent(status)}&limit=100`);
    fill(list, ...(data.length ? data.map((a) => approvalCard(a, load)) : [h("p", { class: "muted" }, `No ${status} approvals.`)]),
      has_more ? h("p", { class: "muted" }, "The newest 100 are shown; decide these to see more.") : null);
  };
  render(
    h("h1", {}, "Approvals"),
    h("div", { class: "tabs" }, ["pending", "approved", "rejected", "expired", "cancelled"].map((s) =>
      h("button", { class: s === status ? "current" : "", onclick: () => go(`#/approvals?status=${s}`) }, s))),
    list);
  await load();
  if (status === "pending") every(3000, () => { if (!list.contains(document.activeElement)) load().catch(() => {}); });
}

export async function schedulesPage() {
  const { query } = location();
  const highlight = query.get("highlight");
  const body = h("tbody", { id: "schedules" });
  const names = new Map((await api("/v1/agents")).data.map((a) => [a.id, a.name]));
  const load = async () => {
    const { data } = await api("/v1/schedules?limit=200");
    fill(body, ...data.map((s) => {
      const call = (what, method = "POST") => (e) => act(e.target, async () => {
        await api(`/v1/schedules/${encodeURIComponent(s.id)}${what ? `/${what}` : ""}`, { method });
        await load();
      });
      return h("tr", { dataset: { schedule: s.id }, class: s.id === highlight ? "highlight" : "" },
        h("td", {}, h("a", { href: `#/agents/${names.get(s.agent_id) || s.agent_id}` }, names.get(s.agent_id) || s.agent_id)),
        h("td", { class: "mono" }, s.cron, h("div", { class: "muted" }, s.description || "")),
        h("td", {}, s.timezone),
        h("td", {}, s.enabled ? "enabled" : "paused"),
        h("td", {}, (s.next_runs || []).slice(0, 2).map((t) => h("div", {}, when(t)))),
        h("td", {}, s.last_error ? h("span", { class: "error-text" }, s.last_error) : ""),
        h("td", {}, h("div", { class: "actions" },
          h("button", { onclick: call("trigger") }, "Run now"),
          s.enabled ? h("button", { onclick: call("pause") }, "Pause") : h("button", { onclick: call("resume") }, "Resume"),
          h("a", { href: `#/executions?schedule=${s.id}` }, "Runs"),
          h("button", { class: "danger", onclick: call("", "DELETE") }, "Delete"))));
    }));
    if (!data.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No schedules. Make one from an execution with Make Repeatable.")));
  };
  render(h("h1", {}, "Schedules"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Agent", "Cron", "Zone", "State", "Next", "Last error", ""].map((t) => h("th", {}, t)))), body));
  await load();
}

export async function conversationsPage() {
  const { data } = await api("/v1/conversations?limit=100");
  const agents = new Map((await api("/v1/agents")).data.map((a) => [a.id, a.name]));
  render(h("h1", {}, "Conversations"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Agent", "Turns", "Tokens", "Last active", "Id"].map((t) => h("th", {}, t)))),
      h("tbody", { id: "conversations" }, data.map((c) => h("tr", { class: "row", onclick: () => go(`#/conversations/${c.id}`) },
        h("td", {}, agents.get(c.agent_id) || c.agent_id), h("td", {}, c.turn_count), h("td", {}, c.token_count),
        h("td", {}, when(c.last_active_at)), h("td", { class: "mono" }, c.id))))));
}

/// A conversation as a chat: its turns, and a box that sends the next one and
/// streams the answer as it comes.
export async function conversationPage(id) {
  const conversation = await api(`/v1/conversations/${encodeURIComponent(id)}`);
  const agent = (await api("/v1/agents")).data.find((a) => a.id === conversation.agent_id);
  const chat = h("div", { class: "panel chat", id: "chat" });
  const counts = h("p", { class: "muted", id: "chat-counts" });
  const draw = (c) => {
    fill(counts, `${c.turn_count} turns, ${c.token_count} tokens`);
    fill(chat, ...c.turns.map((t) => h("div", { class: `bubble ${t.role}` }, t.content,
      h("span", { class: "meta" }, when(t.timestamp), t.execution_id ? [" · ", h("a", { href: `#/executions/${t.execution_id}` }, "run")] : null))));
  };
  draw(conversation);
  const message = h("input", { id: "chat-input", placeholder: "Message", size: 60, autocomplete: "off" });
  const send = (event) => {
    event.preventDefault();
    const text = message.value.trim();
    if (!text || !agent) return;
    act(event.submitter, async () => {
      chat.append(h("div", { class: "bubble user" }, text));
      const answer = h("div", { class: "bubble assistant" }, liveBadge(), " ");
      chat.append(answer);
      message.value = "";
      const made = await api(`/v1/agents/${encodeURIComponent(agent.name)}/execute`, { method: "POST", body: { input: { message: text }, conversation_id: id, mode: "async" } });
      const ended = await new Promise((resolve) => {
        follow(made.id, 0, (type, data) => { if (type === "content") answer.append(data.delta); }, resolve);
      });
      if (!ended) toast("The answer's stream could not be reopened; it shows once the turn is stored.", true);
      draw(await api(`/v1/conversations/${encodeURIComponent(id)}`));
    });
  };
  render(
    h("h1", {}, "Conversation", h("span", { class: "muted" }, agent ? agent.name : conversation.agent_id), h("span", { class: "muted mono" }, id)),
    counts,
    chat,
    h("form", { class: "actions", onsubmit: send }, message, h("button", { class: "primary", type: "submit", id: "chat-send" }, "Send")));
}
