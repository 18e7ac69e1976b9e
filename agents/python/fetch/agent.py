"""`fetch` in Python: the agent's own HTTP request (`warden.http.fetch`, over
`wasi:http`), sent by the host only to the hosts its manifest allows. Input:
`{"url", "method"?, "body"?, "headers"?, "confirm"?}`; output: the status, the
content type, the body's size and its text (or JSON). With `confirm`, a person
approves the result first: the run waits unloaded, and when it resumes its
request is answered from its journal, not sent again."""

from dataclasses import dataclass, field
from typing import Dict, Optional

import warden


@dataclass
class Input:
    url: str
    method: str = "GET"
    body: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    confirm: bool = False


@warden.agent
def run(input: Input) -> dict:
    resp = warden.http.fetch(input.url, method=input.method, body=input.body, headers=input.headers)
    warden.log.info(f"{input.method} {input.url} -> {resp.status} ({len(resp.body)} bytes)")
    content_type = resp.headers.get("content-type", "")
    out = {"status": resp.status, "content_type": content_type, "bytes": len(resp.body)}
    if content_type.startswith("application/json"):
        out["json"] = resp.json()
    else:
        out["text"] = resp.text()
    if input.confirm:
        warden.approval.require(f"Use the answer of {input.url}?", {"status": resp.status})
    return out
