// Warden's JavaScript SDK: an agent is one function (JSON in, JSON out)
// wrapped by `agent`, built into a component against the one `wit/agent.wit`
// (`warden build`, with componentize-qjs). The host's imports (models, tools,
// artifacts, approvals, conversations, memory) are the namespaces below;
// their errors are `AgentError`s with the same codes as the Rust SDK's.
// `fetch` (also `http.fetch`) sends the agent's own HTTP requests.

import * as witLog from "warden:agent/log@0.1.0";
import * as witStep from "warden:agent/step@0.1.0";
import * as witLlm from "warden:agent/llm@0.1.0";
import * as witTools from "warden:agent/tools@0.1.0";
import * as witArtifacts from "warden:agent/artifacts@0.1.0";
import * as witApproval from "warden:agent/approval@0.1.0";
import * as witConversation from "warden:agent/conversation@0.1.0";
import * as witMemory from "warden:agent/memory@0.1.0";

import { AgentError } from "./errors.js";
import { fetch } from "./http.js";

export { AgentError };
export { fetch, Headers, HttpError, Response } from "./http.js";

/** The agent's own HTTP requests (`warden:agent/http`), to the hosts its manifest allows (`http_fetch` granted). */
export const http = { fetch };

function fail(code, message) {
  const error = new Error(message);
  error.payload = { code, message };
  return error;
}

/** Makes `fn(input) => output` the agent's `run` export: `export const run = agent(fn)`. */
export function agent(fn) {
  return function run(text) {
    let input;
    try {
      input = JSON.parse(text);
    } catch (e) {
      throw fail("invalid_input", `input does not fit this agent: ${e.message}`);
    }
    let output;
    try {
      output = fn(input);
      if (output && typeof output.then === "function") {
        throw new AgentError("invalid_output", "the agent returned a Promise: its function must not be async");
      }
    } catch (e) {
      if (e instanceof AgentError) throw fail(e.code, e.message);
      // QuickJS's allocation failed: the host's cap on the run's memory.
      if (e && e.name === "InternalError" && e.message === "out of memory") {
        throw fail("memory_limit", "the agent ran out of memory: it reached the run's memory limit");
      }
      throw fail("agent_exception", `${e && e.name ? e.name : "Error"}: ${e && e.message !== undefined ? e.message : e}`);
    }
    let json;
    try {
      json = JSON.stringify(output === undefined ? null : output);
    } catch (e) {
      throw fail("invalid_output", `output could not be serialised: ${e.message}`);
    }
    return json;
  };
}

/** Calls a host import; its thrown `{tag, val}` becomes an AgentError. */
function host(call, code) {
  try {
    return call();
  } catch (e) {
    if (e && e.payload && typeof e.payload === "object" && "tag" in e.payload) {
      throw new AgentError(typeof code === "function" ? code(e.payload.tag) : code, String(e.payload.val ?? e.payload.tag));
    }
    throw e;
  }
}

const text = (message) => (typeof message === "string" ? message : JSON.stringify(message));

/** The run's log (`console.log` goes there too, as stdout). */
export const log = {
  trace: (message) => witLog.write("trace", text(message)),
  debug: (message) => witLog.write("debug", text(message)),
  info: (message) => witLog.write("info", text(message)),
  warn: (message) => witLog.write("warn", text(message)),
  error: (message) => witLog.write("error", text(message)),
};

/** Records a step with a JSON detail; returns its number in the run. */
export function step(name, detail = null) {
  return witStep.add(name, JSON.stringify(detail === undefined ? null : detail));
}

function toWitMessage(m) {
  return {
    role: m.role,
    content: m.content ?? "",
    toolCalls: (m.toolCalls ?? []).map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })),
    toolCallId: m.toolCallId ?? undefined,
  };
}

function fromWitCall(c) {
  let args = null;
  try {
    args = JSON.parse(c.arguments);
  } catch {
    args = null;
  }
  return { id: c.id, name: c.name, arguments: c.arguments, args };
}

const LLM_CODES = {
  "model-not-allowed": "model_not_allowed",
  "budget-exceeded": "budget_exceeded",
  provider: "llm_error",
  "invalid-request": "invalid_request",
};

/** Language models through the host (keys, network and budgets stay there). */
export const llm = {
  system: (content) => ({ role: "system", content }),
  user: (content) => ({ role: "user", content }),
  assistant: (content) => ({ role: "assistant", content }),
  /** The assistant turn that asked for tools (put it back before the results). */
  assistantCalls: (completion) => ({ role: "assistant", content: completion.content, toolCalls: completion.toolCalls }),
  /** A tool's result (text, or any JSON-able value), answering `callId`. */
  toolResult: (callId, content) => ({ role: "tool", content: text(content), toolCallId: callId }),
  /** A tool the model may call; `parameters` is its JSON Schema. */
  tool: (name, description, parameters) => ({ name, description, parameters }),
  /** Sends a chat; the whole completion, or an AgentError (`model_not_allowed`, ...). */
  chat(messages, tools = [], options = {}) {
    const done = host(
      () =>
        witLlm.chat(
          messages.map(toWitMessage),
          tools.map((t) => ({ name: t.name, description: t.description, parameters: JSON.stringify(t.parameters) })),
          {
            model: options.model ?? undefined,
            temperature: options.temperature ?? undefined,
            maxTokens: options.maxTokens ?? undefined,
            stop: options.stop ?? [],
          },
        ),
      (tag) => LLM_CODES[tag] ?? "llm_error",
    );
    return { ...done, finishReason: done.finishReason.replace("-", "_"), toolCalls: done.toolCalls.map(fromWitCall) };
  },
};

/** The host's tools (`kv`, `http_fetch`, `agent_call`, MCP servers' tools). */
export const tools = {
  available: () => witTools.available().map((t) => ({ ...t, parameters: JSON.parse(t.parameters || "{}") })),
  /** Calls a tool with JSON-able arguments; its result (parsed JSON), or `tool_error`. */
  call(name, args = {}) {
    const result = host(() => witTools.call(name, JSON.stringify(args)), "tool_error");
    try {
      return JSON.parse(result);
    } catch (e) {
      throw new AgentError("tool_error", `${name}: result is not JSON: ${e.message}`);
    }
  },
};

/** Files the run stores (screenshots, reports), served with its record. */
export const artifacts = {
  /** Stores bytes (a Uint8Array) under a name with a media type; the artifact's id. */
  put: (name, mediaType, data) => host(() => witArtifacts.put(name, mediaType, data), "artifact_error"),
};

/** Approvals: ask a person and wait for the decision. */
export const approval = {
  /** The decision as it is: `{status: "approved", data}`, `{status: "rejected", reason}` or `{status: "expired"}`. */
  ask(title, detail = null, options = {}) {
    const decided = host(
      () =>
        witApproval.request({
          title,
          detail: JSON.stringify(detail),
          approvers: options.approvers ?? [],
          // componentize-qjs takes a u64 as a Number.
          timeoutSecs: options.timeoutSecs ?? undefined,
        }),
      "invalid_approval_request",
    );
    if (decided.tag === "approved") return { status: "approved", data: decided.val ? JSON.parse(decided.val) : null };
    if (decided.tag === "rejected") return { status: "rejected", reason: decided.val };
    return { status: "expired" };
  },
  /** Approved: the data attached; a rejection or expiry throws `rejected` / `approval_expired`. */
  require(title, detail = null, options = {}) {
    const decided = approval.ask(title, detail, options);
    if (decided.status === "approved") return decided.data;
    if (decided.status === "rejected") throw new AgentError("rejected", decided.reason || "the request was rejected");
    throw new AgentError("approval_expired", "nobody decided the request before its timeout");
  },
};

/** Conversations: a run that is a turn of one sees the turns before it. */
export const conversation = {
  id: () => witConversation.id() ?? null,
  history(maxTurns, maxTokens) {
    const got = witConversation.history({ maxTurns: maxTurns ?? undefined, maxTokens: maxTokens ?? undefined });
    return { messages: got.messages.map((m) => ({ ...m, toolCalls: m.toolCalls.map(fromWitCall) })), truncated: got.truncated };
  },
  /** A model call's messages for this turn: `system`, the history, then `user`. */
  messages(system, user) {
    const past = conversation.history();
    return { messages: [...(system ? [llm.system(system)] : []), ...past.messages, llm.user(user)], truncated: past.truncated };
  },
};

function memoryOf(store) {
  const code = (tag) => (tag === "not-available" ? "memory_unavailable" : "memory_error");
  return {
    get(key, fallback = null) {
      // An empty option comes as null.
      const found = host(() => witMemory.get(store, key), code);
      return found == null ? fallback : JSON.parse(found);
    },
    set: (key, value) => host(() => witMemory.set(store, key, JSON.stringify(value)), code),
    delete: (key) => host(() => witMemory.delete(store, key), code),
    keys: (prefix = "") => host(() => witMemory.keys(store, prefix), code),
  };
}

/** Memory that outlives a run: the session's, or an attached store's. */
export const memory = {
  session: () => memoryOf(undefined),
  store: (name) => memoryOf(name),
};
