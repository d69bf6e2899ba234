"""Error messages a person can read: the API server's refusals and pydantic's.

Pure: no I/O. Every component reports an API failure by the `message` of the metav1.Status the
API server returned (e.g. a CRD validation refusal), never by the raw response, and invalid
data by its first few problems, each as `path.to.field: what is wrong`.
"""

from __future__ import annotations

import json

import pydantic

_MAX_RAW = 300


def status_message(body: object) -> str:
    """The `message` of a metav1.Status body; a body that is not JSON, trimmed; else ""."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:_MAX_RAW]
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else ""


def validation_summary(error: pydantic.ValidationError, limit: int = 5) -> str:
    """The first `limit` problems of a validation error, `; `-separated."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:limit]
    )
