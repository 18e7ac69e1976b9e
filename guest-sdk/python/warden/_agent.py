"""The agent's entry: the function or class an agent registers, JSON in and
out, typed input, and the error it fails with. `WitWorld` is what the
component exports (componentize-py looks it up in the build's entry module)."""

import dataclasses
import json
import sys
import traceback
import types
import typing

from componentize_py_types import Err
from wit_world.imports import warden_agent_types as wit_types


class AgentError(Exception):
    """A typed failure: the execution ends `failed` with this `code`
    (machine-readable snake_case) and `message` (for a person)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def invalid_input(cls, message: str) -> "AgentError":
        """The input did not fit what the agent expects (retrying will not help)."""
        return cls("invalid_input", message)


_entry = None
# The entry's input type, read once (at build time: the component's snapshot
# keeps it), not at every run.
_entry_hint = typing.Any
# A dataclass's field types and fields, read once per class.
_shapes = {}


def _register(fn):
    global _entry, _entry_hint
    _entry = fn
    params = [hint for name, hint in typing.get_type_hints(fn).items() if name != "return"]
    _entry_hint = params[0] if params else typing.Any


def agent(fn):
    """Makes `fn(input) -> output` the agent's entry point. Its first
    parameter's annotation (a dataclass, a TypedDict, or plain JSON types)
    says what input it takes."""
    _register(fn)
    return fn


def _shape(cls):
    shape = _shapes.get(cls)
    if shape is None:
        shape = (typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init})
        _shapes[cls] = shape
    return shape


class Agent:
    """The class form: subclass it and define `run(self, input)`; the subclass
    is the agent (one instance per run)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls.run)
        target = cls

        def run(input):
            return target().run(input)

        run.__annotations__ = {k: v for k, v in hints.items() if k != "self"}
        _register(run)

    def run(self, input):
        raise NotImplementedError


class _Mismatch(Exception):
    pass


def _convert(value, hint, path):
    """`value` (parsed JSON) as `hint` says, or `_Mismatch` naming where not."""
    if hint is typing.Any or hint is None or hint is object:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except _Mismatch as e:
                errors.append(str(e))
        raise _Mismatch(errors[0] if errors else f"{path or 'input'}: null is not allowed")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch(f"{path or 'input'}: expected an object, got {_kind(value)}")
        # As serde does by default: fields it does not name are ignored.
        hints, fields = _shape(hint)
        made = {}
        for name, field in fields.items():
            if name in value:
                made[name] = _convert(value[name], hints.get(name, typing.Any), f"{path}.{name}" if path else name)
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise _Mismatch(f"{path or 'input'}: missing field {name!r}")
        return hint(**made)
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            raise _Mismatch(f"{path or 'input'}: expected an object, got {_kind(value)}")
        hints = typing.get_type_hints(hint)
        for name in getattr(hint, "__required_keys__", ()):
            if name not in value:
                raise _Mismatch(f"{path or 'input'}: missing field {name!r}")
        return {
            k: _convert(v, hints[k], f"{path}.{k}" if path else k) if k in hints else v for k, v in value.items()
        }
    if origin in (list, typing.List):
        if not isinstance(value, list):
            raise _Mismatch(f"{path or 'input'}: expected an array, got {_kind(value)}")
        item = args[0] if args else typing.Any
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise _Mismatch(f"{path or 'input'}: expected an object, got {_kind(value)}")
        item = args[1] if len(args) == 2 else typing.Any
        return {k: _convert(v, item, f"{path}.{k}" if path else k) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool, list, dict):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise _Mismatch(f"{path or 'input'}: expected {_names[hint]}, got {_kind(value)}")
        return value
    return value


_names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}


def _kind(value):
    if value is None:
        return "null"
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    (list, "an array"), (dict, "an object")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _plain(value):
    """An output as JSON-able values: dataclasses become objects."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fail(code, message):
    return Err(wit_types.AgentError(code=code, message=message))


def run_entry(text: str) -> str:
    """JSON in, the agent, JSON out; failures as the world's `agent-error`."""
    if _entry is None:
        raise _fail("no_agent", "the module defines no agent: decorate a function with @warden.agent")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise _fail("invalid_input", f"input does not fit this agent: {e}")
    try:
        value = _convert(value, _entry_hint, "")
    except _Mismatch as e:
        raise _fail("invalid_input", f"input does not fit this agent: {e}")
    try:
        output = _entry(value)
    except AgentError as e:
        raise _fail(e.code, e.message)
    except MemoryError:
        # The host's cap on the run's memory (the manifest's limits.memory_mb).
        raise _fail("memory_limit", "the agent ran out of memory: it reached the run's memory limit")
    except Exception as e:  # noqa: BLE001 - any other failure is the agent's
        traceback.print_exc()
        raise _fail("agent_exception", f"{type(e).__name__}: {e}")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        return json.dumps(_plain(output), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise _fail("invalid_output", f"output could not be serialised: {e}")


class WitWorld:
    """The component's export: `run(input)` of the `agent` world."""

    def run(self, input: str) -> str:
        return run_entry(input)


def _warm():
    """Runs the SDK's own per-run path a few times at build time, so that the
    snapshot keeps its bytecode specialised (each run starts from it)."""
    text = '{"a": [1, 2.5, "x", null, true, {"b": false}], "c": "d"}'
    for _ in range(64):
        value = json.loads(text)
        _convert(value, typing.Any, "")
        _convert(value["a"], typing.List[typing.Any], "")
        json.dumps(_plain(value), allow_nan=False)


_warm()
