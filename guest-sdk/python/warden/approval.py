"""Approvals: ask a person and wait for the decision (minutes or days; the host
unloads a durable run meanwhile and resumes it when someone decides)."""

import json
from dataclasses import dataclass
from typing import Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import approval as wit

from ._agent import AgentError


@dataclass
class Decision:
    status: str  # "approved", "rejected" or "expired"
    data: object = None  # approved: what the approver attached (JSON)
    reason: str = ""  # rejected: why


def ask(title: str, detail=None, *, approvers: Sequence[str] = (), timeout_secs: Optional[int] = None) -> Decision:
    """Opens a request and waits for its decision, as it is. `approvers`: names
    of the keys that may decide (none: any admin or approver key)."""
    request = wit.ApprovalRequest(title=title, detail=json.dumps(detail), approvers=list(approvers),
                                  timeout_secs=timeout_secs)
    try:
        decided = wit.request(request)
    except Err as e:
        raise AgentError("invalid_approval_request", e.value.value) from None
    if isinstance(decided, wit.Decision_Approved):
        return Decision("approved", json.loads(decided.value) if decided.value else None)
    if isinstance(decided, wit.Decision_Rejected):
        return Decision("rejected", reason=decided.value)
    return Decision("expired")


def require(title: str, detail=None, **kwargs):
    """Asks and waits; approved: the data the approver attached, if any. A
    rejection raises `AgentError("rejected", reason)`, an expiry
    `approval_expired`: let them end the agent and the execution ends
    `rejected`."""
    decided = ask(title, detail, **kwargs)
    if decided.status == "approved":
        return decided.data
    if decided.status == "rejected":
        raise AgentError("rejected", decided.reason or "the request was rejected")
    raise AgentError("approval_expired", "nobody decided the request before its timeout")
