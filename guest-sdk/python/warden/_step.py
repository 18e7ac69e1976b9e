"""Steps: named units of work the run records in order."""

import json

from wit_world.imports import step as wit_step


def step(name: str, detail=None) -> int:
    """Records a step with a JSON-able detail; returns its number in the run
    (1, 2, ...). A detail that is not JSON-able is recorded as its text."""
    try:
        text = json.dumps(detail, allow_nan=False)
    except (TypeError, ValueError) as e:
        text = json.dumps(f"unserialisable detail: {e}")
    return wit_step.add(name, text)
