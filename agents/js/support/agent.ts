// `support` in TypeScript: answers a customer's question with a model,
// following its tool calls (`lookup_order`, answered from the agent's `kv`
// store) until it answers. Returns `{answer, sources}`: the twin of the Rust
// `support` agent.

import { AgentError, type Json, agent, llm, log, step, tools } from "warden";

const MAX_TURNS = 6;

const lookup = llm.tool("lookup_order", "Look up a customer's order by its id", {
  type: "object",
  properties: { order_id: { type: "string" } },
  required: ["order_id"],
});

interface Input {
  question: string;
  // Orders to store first ({"A-1001": {...}}), for demos and tests.
  orders?: Record<string, Json>;
  model?: string;
}

export const run = agent((input: Input) => {
  for (const [id, order] of Object.entries(input.orders ?? {})) {
    tools.call("kv", { op: "set", key: `order:${id}`, value: order });
  }
  const messages = [
    llm.system("You are a support agent. Use lookup_order for questions about orders. Be brief."),
    llm.user(input.question),
  ];
  const sources: string[] = [];
  for (let turn = 0; turn < MAX_TURNS; turn++) {
    const reply = llm.chat(messages, [lookup], { model: input.model });
    if (reply.toolCalls.length === 0) {
      return { answer: reply.content, sources };
    }
    messages.push(llm.assistantCalls(reply));
    for (const call of reply.toolCalls) {
      const orderId = String((call.args as { order_id?: string } | null)?.order_id ?? "");
      log.info(`looking up order ${orderId}`);
      const found = tools.call<{ found: boolean; value?: Json }>("kv", { op: "get", key: `order:${orderId}` });
      let result: Json = `no order ${orderId}`;
      if (found.found === true) {
        sources.push(`kv:order:${orderId}`);
        result = found.value ?? null;
      }
      step("lookup_order", { order_id: orderId, found: found.found });
      messages.push(llm.toolResult(call.id, result));
    }
  }
  throw new AgentError("too_many_turns", `no answer after ${MAX_TURNS} model turns`);
});
