"""Every status the GPUInventory shows, as a watcher of our own sees it, for tests that must prove
the operator never published something (a total that never existed, a condition that
disagrees with its generation), not only that it ends up right.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch

from gpu_inventory.api import constants


class InventoryWatch:
    """Records each status of `GPUInventory/cluster` from a watch, until `stop()`."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.statuses: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.statuses

    def ready_totals(self) -> list[int]:
        """`summary.allocated` of every status shown with Ready=True."""
        return [
            s["summary"]["allocated"]
            for s in self.statuses
            if condition(s, "Ready") == "True" and "summary" in s
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    constants.GROUP,
                    constants.VERSION,
                    constants.INVENTORY_PLURAL,
                    timeout_seconds=5,
                )
                for event in stream:
                    status = event["object"].get("status")
                    if status:
                        self.statuses.append(status)
                    if self._stop.is_set():
                        return
            except Exception:  # the API server may restart under this watch
                time.sleep(0.2)


def condition(status: dict[str, Any], type_: str) -> str | None:
    """The status of condition `type_`, None when absent."""
    found = [c for c in status.get("conditions", []) if c["type"] == type_]
    return found[0]["status"] if found else None
