"""Warden's Python SDK: write an agent as one plain function (or a class) over
JSON-shaped Python values, built into a WebAssembly component with
`componentize-py` against the one `wit/agent.wit` (`warden build`).

    import warden
    from dataclasses import dataclass

    @dataclass
    class Input:
        name: str

    @warden.agent
    def run(input: Input) -> dict:
        warden.log.info(f"greeting {input.name}")
        warden.step("greet", {"name": input.name})
        return {"greeting": f"Hello, {input.name}!"}

Input arrives as JSON; with a dataclass (or TypedDict) annotation it is checked
and converted, and a mismatch ends the run `failed` with `invalid_input`, as in
the Rust SDK. Raise `AgentError(code, message)` to fail on purpose. The host's
imports (models, tools, artifacts, approvals, conversations, memory) are the
modules below; their errors are `AgentError`s with the same codes as Rust's.
`http.fetch` sends the agent's own HTTP requests (`wasi:http`) to the hosts its
manifest allows.
"""

from . import approval, artifacts, conversation, http, llm, log, memory, tools
from ._agent import Agent, AgentError, agent
from ._step import step

__all__ = [
    "Agent",
    "AgentError",
    "agent",
    "approval",
    "artifacts",
    "conversation",
    "http",
    "llm",
    "log",
    "memory",
    "step",
    "tools",
]
