"""Memory that outlives a run: the conversation's session memory and the
memory stores attached to the run, each JSON values by key. Host errors are
`memory_error` (or `memory_unavailable`: no such memory for this run)."""

import json
from typing import List, Optional

from componentize_py_types import Err
from wit_world.imports import memory as wit

from ._agent import AgentError


def _error(e: Err) -> AgentError:
    code = "memory_unavailable" if isinstance(e.value, wit.Error_NotAvailable) else "memory_error"
    return AgentError(code, e.value.value)


class Memory:
    def __init__(self, store: Optional[str]):
        self._store = store

    def get(self, key: str, default=None):
        """The value of `key`, or `default` when it is not set."""
        try:
            text = wit.get(self._store, key)
        except Err as e:
            raise _error(e) from None
        return default if text is None else json.loads(text)

    def set(self, key: str, value) -> None:
        try:
            wit.set(self._store, key, json.dumps(value))
        except Err as e:
            raise _error(e) from None

    def delete(self, key: str) -> bool:
        """Deletes `key`; whether it was set."""
        try:
            return wit.delete(self._store, key)
        except Err as e:
            raise _error(e) from None

    def keys(self, prefix: str = "") -> List[str]:
        try:
            return wit.keys(self._store, prefix)
        except Err as e:
            raise _error(e) from None


def session() -> Memory:
    """The conversation's session memory."""
    return Memory(None)


def store(name: str) -> Memory:
    """An attached memory store, by name."""
    return Memory(name)
