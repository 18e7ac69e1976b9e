"""`support` in Python: answers a customer's question with a model, following
its tool calls (`lookup_order`, answered from the agent's `kv` store) until it
answers. Returns `{answer, sources}`: the twin of the Rust `support` agent."""

from dataclasses import dataclass, field
from typing import Optional

import warden
from warden.llm import Message, Tool

MAX_TURNS = 6

LOOKUP = Tool(
    "lookup_order",
    "Look up a customer's order by its id",
    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)


@dataclass
class Input:
    question: str
    # Orders to store first ({"A-1001": {...}}), for demos and tests.
    orders: dict = field(default_factory=dict)
    model: Optional[str] = None


@warden.agent
def run(input: Input) -> dict:
    for order_id, order in input.orders.items():
        warden.tools.call("kv", {"op": "set", "key": f"order:{order_id}", "value": order})
    messages = [
        Message.system("You are a support agent. Use lookup_order for questions about orders. Be brief."),
        Message.user(input.question),
    ]
    sources = []
    for _ in range(MAX_TURNS):
        reply = warden.llm.chat(messages, [LOOKUP], model=input.model)
        if not reply.tool_calls:
            return {"answer": reply.content, "sources": sources}
        messages.append(Message.assistant_calls(reply))
        for call in reply.tool_calls:
            order_id = (call.args or {}).get("order_id", "")
            warden.log.info(f"looking up order {order_id}")
            found = warden.tools.call("kv", {"op": "get", "key": f"order:{order_id}"})
            if found.get("found") is True:
                sources.append(f"kv:order:{order_id}")
                result = found["value"]
            else:
                result = f"no order {order_id}"
            warden.step("lookup_order", {"order_id": order_id, "found": found.get("found")})
            messages.append(Message.tool_result(call.id, result))
    raise warden.AgentError("too_many_turns", f"no answer after {MAX_TURNS} model turns")
