"""Every failure the API fuzzer has found, replayed as a fixed case against the
live server scripts/fuzz starts: each request and the answer it must get now.

    python3 fuzz/regressions.py BASE_URL TOKEN
"""

import json
import sys
import urllib.error
import urllib.request

BASE, TOKEN = sys.argv[1], sys.argv[2]


def call(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


failures = []


def expect(name, got, status, code=None):
    st, body = got
    ok = st == status
    if ok and code is not None:
        try:
            ok = json.loads(body)["error"]["code"] == code
        except Exception:  # noqa: BLE001 - any shape problem is the finding
            ok = False
    print(f"{'ok ' if ok else 'FAIL'} {name}: {st} {body[:160]!r}")
    if not ok:
        failures.append(name)


st, body = call("POST", "/v1/agents/echo/execute", {"input": {"n": 1}})
assert st == 200, (st, body)
exec_id = json.loads(body)["id"]

# A whole number written as a float is a whole number (JSON Schema's integer).
expect("priority 44.0 is accepted", call("POST", "/v1/agents/echo/execute", {"priority": 44.0}), 200)
# Page limits out of range are refused, not clamped.
expect("limit=0", call("GET", "/v1/executions?limit=0"), 400, "invalid_query")
expect("limit=501", call("GET", "/v1/executions?limit=501"), 400, "invalid_query")
# Time filters are RFC 3339, as documented; Unix milliseconds are not.
expect("created_after in ms", call("GET", "/v1/executions?created_after=1700000000000"), 400, "invalid_query")
# Sequence cursors are non-negative int64s; a log cursor past every line is an empty page.
expect("logs after 2^31", call("GET", f"/v1/executions/{exec_id}/logs?after=2147483648"), 200)
expect("events after 2^63", call("GET", f"/v1/executions/{exec_id}/events?after=9223372036854775808"), 400, "invalid_query")
expect("events after -1", call("GET", f"/v1/executions/{exec_id}/events?after=-1"), 400, "invalid_query")
# Last-Event-ID is documented as an integer: `null` is not one.
expect(
    "Last-Event-ID: null",
    call("GET", f"/v1/executions/{exec_id}/stream", headers={"Last-Event-ID": "null"}),
    400,
    "invalid_request",
)
# A bad ?after= is refused even when a Last-Event-ID comes with it.
expect(
    "?after=-1 with Last-Event-ID",
    call("GET", f"/v1/executions/{exec_id}/stream?after=-1", headers={"Last-Event-ID": "0"}),
    400,
    "invalid_query",
)
# Key names are 1 to 100 characters (not bytes).
expect("a 100-character name", call("POST", "/admin/keys", {"name": "é" * 100}), 201)
expect("a 101-character name", call("POST", "/admin/keys", {"name": "é" * 101}), 422, "invalid_request")
# A key cannot revoke itself.
own = "key_" + TOKEN.split("_")[1]
expect("revoking the key in use", call("DELETE", f"/admin/keys/{own}"), 409, "own_key")

if failures:
    sys.exit(f"{len(failures)} regression case(s) failed: {', '.join(failures)}")
print(f"all regression cases pass")
