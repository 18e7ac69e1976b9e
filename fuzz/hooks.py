"""Checks the API fuzzer adds to its own: every error answer has the typed shape."""

import schemathesis


@schemathesis.check
def typed_errors(ctx, response, case):
    """Every 4xx/5xx body is {"error": {"code": str, "message": str}}."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as e:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(f"error body is not JSON: {e}: {response.text[:200]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no `error` object in {body!r}"
    assert isinstance(error.get("code"), str) and error["code"], f"no error.code in {body!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"no error.message in {body!r}"
    return None
