"""Language models through the host (keys, network and budgets stay there).

    reply = warden.llm.chat([Message.system("Be brief."), Message.user(question)],
                            tools=[Tool("lookup_order", "Look up an order", schema)])
    for call in reply.tool_calls:
        call.args["order_id"]
"""

import json
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import llm as wit

from ._agent import AgentError


@dataclass
class ToolCall:
    """A call the model asked for: `arguments` is JSON text, `args` parsed."""

    id: str
    name: str
    arguments: str

    @property
    def args(self):
        try:
            return json.loads(self.arguments)
        except ValueError:
            return None


@dataclass
class Message:
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    tool_calls: List[ToolCall] = field(default_factory=list)
    tool_call_id: Optional[str] = None

    @classmethod
    def system(cls, content: str) -> "Message":
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> "Message":
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str) -> "Message":
        return cls("assistant", content)

    @classmethod
    def assistant_calls(cls, completion: "Completion") -> "Message":
        """The assistant turn that asked for tools (put it back before the results)."""
        return cls("assistant", completion.content, list(completion.tool_calls))

    @classmethod
    def tool_result(cls, call_id: str, content) -> "Message":
        """A tool's result (text, or any JSON-able value), answering `call_id`."""
        text = content if isinstance(content, str) else json.dumps(content)
        return cls("tool", text, tool_call_id=call_id)


@dataclass
class Tool:
    """A tool the model may call; `parameters` is its JSON Schema."""

    name: str
    description: str
    parameters: dict


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass
class Completion:
    content: str
    tool_calls: List[ToolCall]
    usage: Usage
    model: str
    finish_reason: str  # "stop", "length", "tool_calls", "content_filter" or "other"


_ROLES = {"system": wit.Role.SYSTEM, "user": wit.Role.USER, "assistant": wit.Role.ASSISTANT, "tool": wit.Role.TOOL}


def _message(m) -> wit.Message:
    if isinstance(m, dict):
        m = Message(m["role"], m.get("content", ""), [ToolCall(**c) for c in m.get("tool_calls", [])],
                    m.get("tool_call_id"))
    if m.role not in _ROLES:
        raise AgentError("invalid_request", f"a message's role is one of {sorted(_ROLES)}, not {m.role!r}")
    return wit.Message(
        role=_ROLES[m.role],
        content=m.content,
        tool_calls=[wit.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in m.tool_calls],
        tool_call_id=m.tool_call_id,
    )


_CODES = {
    wit.Error_ModelNotAllowed: "model_not_allowed",
    wit.Error_BudgetExceeded: "budget_exceeded",
    wit.Error_Provider: "llm_error",
    wit.Error_InvalidRequest: "invalid_request",
}


def chat(
    messages: Sequence,
    tools: Sequence[Tool] = (),
    *,
    model: Optional[str] = None,
    temperature: Optional[float] = None,
    max_tokens: Optional[int] = None,
    stop: Sequence[str] = (),
) -> Completion:
    """Sends a chat (`Message`s or dicts alike) and returns the whole
    completion. `model` none: the run's model (the manifest's default, or the
    one its caller picked). The host's errors are `AgentError`s:
    `model_not_allowed`, `budget_exceeded`, `llm_error`, `invalid_request`."""
    try:
        done = wit.chat(
            [_message(m) for m in messages],
            [wit.ToolDefinition(name=t.name, description=t.description, parameters=json.dumps(t.parameters))
             for t in tools],
            wit.Options(model=model, temperature=temperature, max_tokens=max_tokens, stop=list(stop)),
        )
    except Err as e:
        raise AgentError(_CODES.get(type(e.value), "llm_error"), e.value.value) from None
    u = done.usage
    return Completion(
        content=done.content,
        tool_calls=[ToolCall(c.id, c.name, c.arguments) for c in done.tool_calls],
        usage=Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cache_read_tokens, u.cache_write_tokens),
        model=done.model,
        finish_reason=done.finish_reason.name.lower(),
    )
