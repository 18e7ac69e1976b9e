"""The host's tools (`kv`, `http_fetch`, `agent_call`, MCP servers' tools), as
the manifest allows."""

import json
from dataclasses import dataclass
from typing import List

from componentize_py_types import Err
from wit_world.imports import tools as wit

from ._agent import AgentError


@dataclass
class ToolInfo:
    name: str
    description: str
    parameters: dict


def available() -> List[ToolInfo]:
    """The tools this agent may call."""
    return [ToolInfo(t.name, t.description, json.loads(t.parameters or "{}")) for t in wit.available()]


def call(name: str, arguments=None):
    """Calls a tool with JSON-able arguments; returns its result (parsed JSON).
    Its errors are the `AgentError` `tool_error`."""
    try:
        text = wit.call(name, json.dumps({} if arguments is None else arguments))
    except Err as e:
        raise AgentError("tool_error", f"{name}: {e.value.value}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise AgentError("tool_error", f"{name}: result is not JSON: {e}") from None
