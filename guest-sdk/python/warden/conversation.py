"""Conversations: a run that is a turn of one sees the turns before it."""

from dataclasses import dataclass
from typing import List, Optional, Tuple

from wit_world.imports import conversation as wit

from .llm import Message, ToolCall

_ROLE_NAMES = {0: "system", 1: "user", 2: "assistant", 3: "tool"}


@dataclass
class Transcript:
    messages: List[Message]
    truncated: bool  # older turns were left out


def id() -> Optional[str]:  # noqa: A001 - the import's name
    """The conversation this run is a turn of, if it is one."""
    return wit.id()


def history(max_turns: Optional[int] = None, max_tokens: Optional[int] = None) -> Transcript:
    """The previous turns (within the budget; none: the host's), oldest first."""
    got = wit.history(wit.Budget(max_turns=max_turns, max_tokens=max_tokens))
    return Transcript(
        [Message(_ROLE_NAMES[m.role.value], m.content, [ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls],
                 m.tool_call_id) for m in got.messages],
        got.truncated,
    )


def messages(system: str, user: str) -> Tuple[List[Message], bool]:
    """A model call's messages for this turn: `system` (when not empty), the
    history, then `user`; and whether older turns were left out."""
    past = history()
    return ([Message.system(system)] if system else []) + past.messages + [Message.user(user)], past.truncated
