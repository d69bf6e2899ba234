"""Reading the API server's answers to failed requests.

Pure: no I/O. Every component reports an API failure by the `message` of the metav1.Status the
API server returned (e.g. a CRD validation refusal), never by the raw response.
"""

from __future__ import annotations

import json

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
