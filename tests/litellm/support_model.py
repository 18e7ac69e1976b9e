"""A model for LiteLLM's proxy that plays the `support` agent's counterpart: asked
about an order, it calls `lookup_order` with the order's id; given the tool's
result, it answers with it. Usage is reported, and streamed answers arrive as
real deltas. Loaded by the proxy through `custom_provider_map` (see config.yaml).
"""

import re
import time
from typing import AsyncIterator, Iterator

import litellm
from litellm import CustomLLM
from litellm.types.utils import GenericStreamingChunk


def _turn(messages):
    """What to answer: ("tool", order_id) or ("text", answer)."""
    last = messages[-1]
    if last.get("role") == "tool":
        return "text", f"Order status: {last.get('content')}"
    question = str(last.get("content", ""))
    match = re.search(r"[A-Z]-\d+", question)
    if match:
        return "tool", match.group(0)
    return "text", "How can I help?"


def _usage(messages, completion_tokens):
    prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _response(model, messages):
    kind, value = _turn(messages)
    if kind == "tool":
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup_order", "arguments": f'{{"order_id": "{value}"}}'}}],
        }
        finish, completion = "tool_calls", 12
    else:
        message, finish, completion = {"role": "assistant", "content": value}, "stop", len(value) // 4 + 1
    return litellm.ModelResponse(
        model=model,
        choices=[{"index": 0, "message": message, "finish_reason": finish}],
        usage=_usage(messages, completion),
    )


def _chunks(messages):
    kind, value = _turn(messages)
    if kind == "tool":
        yield GenericStreamingChunk(
            text="", is_finished=True, finish_reason="tool_calls", index=0, usage=_usage(messages, 12),
            tool_use={"id": "call_1", "type": "function", "index": 0,
                      "function": {"name": "lookup_order", "arguments": f'{{"order_id": "{value}"}}'}},
        )
        return
    words = value.split(" ")
    for i, word in enumerate(words):
        last = i == len(words) - 1
        yield GenericStreamingChunk(
            text=word if last else word + " ", is_finished=last, finish_reason="stop" if last else "",
            index=0, tool_use=None, usage=_usage(messages, len(value) // 4 + 1) if last else None,
        )


class SupportModel(CustomLLM):
    def completion(self, *args, **kwargs):
        return _response(kwargs.get("model"), kwargs["messages"])

    async def acompletion(self, *args, **kwargs):
        return _response(kwargs.get("model"), kwargs["messages"])

    def streaming(self, *args, **kwargs) -> Iterator[GenericStreamingChunk]:
        yield from _chunks(kwargs["messages"])

    async def astreaming(self, *args, **kwargs) -> AsyncIterator[GenericStreamingChunk]:
        for chunk in _chunks(kwargs["messages"]):
            time.sleep(0.001)
            yield chunk


support_model = SupportModel()
