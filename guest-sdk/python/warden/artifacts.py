"""Files the run stores (screenshots, reports), served with its record."""

from componentize_py_types import Err
from wit_world.imports import artifacts as wit

from ._agent import AgentError


def put(name: str, media_type: str, data: bytes) -> str:
    """Stores bytes under a file name with a media type; returns the artifact's
    id. Bad names and the run's caps are the `AgentError` `artifact_error`."""
    try:
        return wit.put(name, media_type, bytes(data))
    except Err as e:
        raise AgentError("artifact_error", e.value.value) from None
