// The dashboard's entry: routes `#/…` to its page, marks the current tab, and
// shows a failed load (a 401 shows the sign-in form instead).

import { ApiFailure, Stale, apiKey, h, render, leave, location, signOut } from "./core.js";
import { executionsPage } from "./executions.js";
import { detailPage } from "./detail.js";
import { agentsPage, agentPage, approvalsPage, schedulesPage, conversationsPage, conversationPage } from "./pages.js";

const ROUTES = {
  executions: (id) => (id ? detailPage(id) : executionsPage()),
  agents: (name) => (name ? agentPage(name) : agentsPage()),
  approvals: () => approvalsPage(),
  schedules: () => schedulesPage(),
  conversations: (id) => (id ? conversationPage(id) : conversationsPage()),
};

async function show() {
  leave();
  const { parts } = location();
  const [section = "executions", id] = parts;
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("current", link.dataset.nav === section);
  const page = ROUTES[section];
  if (!page) {
    render(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/executions" }, "Executions")));
    return;
  }
  try {
    await page(id);
  } catch (e) {
    if (e instanceof Stale || (e instanceof ApiFailure && e.status === 401)) return;
    render(h("h1", {}, "Could not load this page"), h("p", { class: "error-text", id: "page-error" }, e instanceof ApiFailure ? `${e.code}: ${e.message}` : String(e)));
  }
}

document.getElementById("sign-out").hidden = !apiKey();
document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", show);
show();
