"""Outgoing HTTP over `wasi:http`: `fetch(url)` returns a `Response`.

The host sends each request under the agent's manifest, as for the
`http_fetch` tool (which the manifest's `tools` must grant): only to
`allowed_hosts`, never to private addresses, no redirects, with the host's
size and time caps; each is recorded on the run as an `http` tool call, and
journaled in a durable run (a replay is answered from the journal). A refused
or failed request raises `HttpError`, an `AgentError` whose code names the
`wasi:http` error (`http_request_denied`, `destination_ip_prohibited`,
`connection_refused`, ...).

    resp = warden.http.fetch("https://api.example.com/items?q=1")
    items = resp.json()
"""

import json
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Union
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as t

from ._agent import AgentError

# Most bytes one write to a body stream takes (what `wasi:io` promises).
_CHUNK = 4096

_METHODS = {
    "GET": t.Method_Get,
    "HEAD": t.Method_Head,
    "POST": t.Method_Post,
    "PUT": t.Method_Put,
    "DELETE": t.Method_Delete,
    "OPTIONS": t.Method_Options,
    "PATCH": t.Method_Patch,
}


class HttpError(AgentError):
    """A request the host refused or that failed; `code` names why."""


@dataclass
class Response:
    status: int
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)


def _code(error) -> str:
    """`ErrorCode_HttpRequestDenied` -> `http_request_denied`."""
    name = type(error).__name__.split("_", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _failed(error, url: str) -> HttpError:
    detail = getattr(error, "value", None)
    detail = getattr(detail, "rcode", detail)
    suffix = f": {detail}" if isinstance(detail, str) and detail else ""
    words = _code(error).replace("_", " ")
    return HttpError(_code(error), f"{url}: {words}{suffix} (the run's `http` tool call says why)")


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Optional[Dict[str, str]] = None,
    body: Union[bytes, str, None] = None,
    json_body=None,
    timeout_ms: Optional[int] = None,
) -> Response:
    """Sends one request and reads the whole response."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError("http_request_uri_invalid", f"{url!r} is not an http or https URL")
    entries = [(k.lower(), v.encode()) for k, v in (headers or {}).items()]
    if json_body is not None:
        body = json.dumps(json_body)
        if not any(k == "content-type" for k, _ in entries):
            entries.append(("content-type", b"application/json"))
    if isinstance(body, str):
        body = body.encode()
    try:
        fields = t.Fields.from_list(entries)
    except Err as e:
        raise HttpError("http_request_header_invalid", f"header: {type(e.value).__name__}") from None
    request = t.OutgoingRequest(fields)
    verb = method.upper()
    request.set_method(_METHODS[verb]() if verb in _METHODS else t.Method_Other(verb))
    request.set_scheme(t.Scheme_Https() if parts.scheme == "https" else t.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing = request.body()
    options = None
    if timeout_ms is not None:
        options = t.RequestOptions()
        options.set_first_byte_timeout(timeout_ms * 1_000_000)
    try:
        pending = outgoing_handler.handle(request, options)
    except Err as e:
        raise _failed(e.value, url) from None
    try:
        if body:
            with outgoing.write() as stream:
                for at in range(0, len(body), _CHUNK):
                    stream.blocking_write_and_flush(body[at : at + _CHUNK])
        t.OutgoingBody.finish(outgoing, None)
    except Err:
        # The host stopped taking the body (it refused the request, or the
        # body is over its cap): the response says why.
        pass
    with pending:
        with pending.subscribe() as ready:
            ready.block()
        got = pending.get()
    if not isinstance(got, Ok) or not isinstance(got.value, Ok):
        error = got.value.value if isinstance(got, Ok) else None
        raise _failed(error, url) if error is not None else HttpError("http_protocol_error", f"{url}: no response")
    with got.value.value as incoming:
        status = incoming.status()
        with incoming.headers() as fields:
            found: Dict[str, str] = {}
            for name, value in fields.entries():
                text = value.decode("latin-1")
                found[name] = f"{found[name]}, {text}" if name in found else text
        received = bytearray()
        content = incoming.consume()
        with content.stream() as stream:
            while True:
                try:
                    received += stream.blocking_read(65536)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise HttpError("http_response_incomplete", f"{url}: the response body was cut off") from None
        with t.IncomingBody.finish(content):
            pass
    return Response(status=status, headers=found, body=bytes(received))
