"""`hello` in Python: the twin of the Rust `hello` agent (typed input and
output; more than 10 greetings fail with `too_many`). The bench compares its
runs with the Rust and TypeScript ones."""

from dataclasses import dataclass

import warden


@dataclass
class Input:
    name: str
    times: int = 1


@warden.agent
def run(input: Input) -> dict:
    if input.times > 10:
        raise warden.AgentError("too_many", "at most 10 greetings")
    warden.log.info(f"greeting {input.name} {input.times} time(s)")
    warden.step("greet", {"name": input.name, "times": input.times})
    return {"greeting": " ".join([f"Hello, {input.name}!"] * input.times)}
