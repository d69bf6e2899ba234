"""Write this node's GPUNode status: a JSON merge patch of the agent's fields on `/status`.

With `nodeview.py`, the only module of the agent that talks to the API server. It creates the
GPUNode (owned by its Node, so deleting the Node garbage-collects it) when the patch finds none,
tolerating a concurrent create by the operator, and reads back the status an earlier run wrote
(`previous`). Failures are reported, never raised: a refusal by the CRD's validation (422) is
logged with the API server's own message, and the caller retries later.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client

from gpu_inventory.api import constants, errors, models
from gpu_inventory.api.objects import gpunode_object
from gpu_inventory.nodeagent.ports import PreviousUnavailableError, WriteOutcome

log = logging.getLogger(__name__)

_MERGE_PATCH = "application/merge-patch+json"


class GPUNodeWriter:
    """Writes GPUNode/<node>'s status. `writes` counts successful status patches."""

    def __init__(
        self, api: client.ApiClient, node_name: str, *, request_timeout: float = 10.0
    ) -> None:
        self.node_name = node_name
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._timeout = request_timeout
        self.writes = 0
        self.failures = 0

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        try:
            try:
                self._patch(patch)
            except client.ApiException as error:
                if error.status != 404:
                    raise
                self._create()
                self._patch(patch)
        except client.ApiException as error:
            self.failures += 1
            if error.status == 422:
                return self._refused(patch, error)
            log.warning("GPUNode/%s: status not written: %s", self.node_name, describe_error(error))
            return WriteOutcome(ok=False)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self.failures += 1
            log.warning(
                "GPUNode/%s: API server unreachable: %s", self.node_name, describe_error(error)
            )
            return WriteOutcome(ok=False)
        self.writes += 1
        return WriteOutcome(ok=True)

    def previous(self) -> Mapping[str, Any] | None:
        """The status GPUNode/<node> holds now; None when there is no GPUNode (404)."""
        try:
            body = self._custom.get_cluster_custom_object(
                constants.GROUP,
                constants.VERSION,
                constants.NODE_PLURAL,
                self.node_name,
                _request_timeout=self._timeout,
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            if error.status == 403:  # never blocks reporting: the XIDs are lost, not the node
                log.error(
                    "GPUNode/%s: not allowed to read it back, so XIDs seen before this start "
                    "are not restored: %s",
                    self.node_name,
                    describe_error(error),
                )
                return None
            raise PreviousUnavailableError(describe_error(error)) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise PreviousUnavailableError(describe_error(error)) from error
        found = body.get("status") if isinstance(body, dict) else None
        return found if isinstance(found, dict) else None

    def _patch(self, patch: dict[str, Any]) -> None:
        self._custom.patch_cluster_custom_object_status(
            constants.GROUP,
            constants.VERSION,
            constants.NODE_PLURAL,
            self.node_name,
            patch,
            field_manager=constants.AGENT_FIELD_MANAGER,
            _content_type=_MERGE_PATCH,
            _request_timeout=self._timeout,
        )

    def _create(self) -> None:
        """Create GPUNode/<node> owned by Node/<node>; AlreadyExists is success."""
        node = self._core.read_node(self.node_name, _request_timeout=self._timeout)
        body = gpunode_object(self.node_name, node.metadata.uid)
        try:
            self._custom.create_cluster_custom_object(
                constants.GROUP,
                constants.VERSION,
                constants.NODE_PLURAL,
                body,
                field_manager=constants.AGENT_FIELD_MANAGER,
                _request_timeout=self._timeout,
            )
            log.info("created GPUNode/%s", self.node_name)
        except client.ApiException as error:
            if error.status != 409:
                raise

    def _refused(self, patch: dict[str, Any], error: client.ApiException) -> WriteOutcome:
        """Log the API server's reason; then tell readers of the GPUNode why it is not current."""
        message = describe_error(error)
        log.error(
            "GPUNode/%s: the API server refused the agent's status: %s", self.node_name, message
        )
        agent = copy.deepcopy(patch.get("status", {}).get("agent"))
        if isinstance(agent, dict):
            note = f"the API server refused this agent's readings: {message}"
            agent["message"] = models.clip(note, models.MAX_MESSAGE)
            try:
                self._patch({"status": {"agent": agent}})
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as again:
                log.warning(
                    "GPUNode/%s: could not record the refusal: %s",
                    self.node_name,
                    describe_error(again),
                )
        return WriteOutcome(ok=False)


def describe_error(error: BaseException) -> str:
    """One line about an API failure: status and the API server's message, never credentials."""
    if isinstance(error, client.ApiException):
        detail = errors.status_message(error.body)
        if error.status in (None, 0):
            return f"request failed: {error.reason}"
        line = f"HTTP {error.status} {error.reason or ''}".strip()
        return f"{line}: {detail}" if detail else line
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:300]
