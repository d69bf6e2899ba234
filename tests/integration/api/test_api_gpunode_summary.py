"""The GPUNode's summary must agree with the GPUs it summarises, checked by the API server
itself (CEL `x-kubernetes-validations` on GPUNodeStatus, generated from api/models.py): a
broken or hostile agent cannot claim GPUs it does not list, or hide unhealthy ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants, models
from gpu_inventory.api.objects import gpunode_object
from gpu_inventory.testing.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

G, V, PLURAL = constants.GROUP, constants.VERSION, constants.NODE_PLURAL
NOW = datetime.now(UTC)


@pytest.fixture
def custom(cluster: ControlPlane, k8s: client.ApiClient) -> client.CustomObjectsApi:
    api = client.CustomObjectsApi(k8s)
    body = gpunode_object("n1", "0")
    del body["metadata"]["ownerReferences"]
    api.create_cluster_custom_object(G, V, PLURAL, body)
    return api


def status(gpus: int, unhealthy: int, *, summary: tuple[int, int] | None = None) -> dict[str, Any]:
    """A status as an agent writes it, with `gpus` GPUs of which `unhealthy` are Unhealthy;
    `summary` overrides what the summary claims."""
    listed = [
        models.GPU(
            uuid=f"GPU-{i}",
            index=i,
            health=models.Health(status="Unhealthy" if i < unhealthy else "Healthy"),
        )
        for i in range(gpus)
    ]
    claimed_gpus, claimed_unhealthy = summary or (gpus, unhealthy)
    return models.GPUNodeStatus(
        summary=models.GPUNodeSummary(
            gpus=claimed_gpus, product="H100", health="Healthy", unhealthy=claimed_unhealthy
        ),
        agent=models.AgentInfo(version="0.1.0", heartbeat_time=NOW, nvml_available=True),
        gpus=listed,
    ).to_wire()


def write(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    written: dict[str, Any] = custom.patch_cluster_custom_object_status(
        G, V, PLURAL, "n1", {"status": body}
    )
    return written


def refused(call: Callable[[], object]) -> dict[str, Any]:
    with pytest.raises(client.ApiException) as error:
        call()
    assert error.value.status == 422, error.value.body
    body: dict[str, Any] = json.loads(error.value.body)
    return body


def test_a_hostile_summary_is_refused_with_a_readable_message(
    custom: client.CustomObjectsApi,
) -> None:
    hostile = status(1, 0, summary=(100_000, 100_000))  # with a fresh heartbeat
    body = refused(lambda: write(custom, hostile))
    assert "summary.gpus must equal the number of GPUs listed in gpus" in body["message"]
    assert (
        "summary.unhealthy must equal the number of listed GPUs whose health.status is"
        in (body["message"])
    )
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert {"status.summary.gpus", "status.summary.unhealthy"} <= fields
    assert "summary" not in custom.get_cluster_custom_object(G, V, PLURAL, "n1").get("status", {})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(status(2, 1, summary=(2, 0)), "summary.unhealthy", id="hides-an-unhealthy"),
        pytest.param(status(2, 0, summary=(3, 0)), "summary.gpus", id="claims-one-more"),
        pytest.param(status(0, 0, summary=(8, 0)), "summary.gpus", id="claims-gpus-it-lists-not"),
        pytest.param({"gpus": status(1, 0)["gpus"]}, "summary.gpus", id="lists-without-summary"),
    ],
)
def test_a_summary_that_disagrees_with_the_list_is_refused(
    custom: client.CustomObjectsApi, body: dict[str, Any], field: str
) -> None:
    message = refused(lambda: write(custom, body))["message"]
    assert f"{field} must equal" in message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(status(32, 32), id="the-largest-node-all-unhealthy"),
        pytest.param(status(8, 3), id="some-unhealthy"),
        pytest.param(status(0, 0), id="nvml-unavailable-no-gpus"),
        pytest.param({"agent": {"nvmlAvailable": False, "message": "released"}}, id="agent-only"),
        pytest.param({"kubernetes": {"allocated": 1}}, id="the-operators-part-only"),
    ],
)
def test_a_summary_that_agrees_is_accepted(
    custom: client.CustomObjectsApi, body: dict[str, Any]
) -> None:
    written = write(custom, body)["status"]
    listed = written.get("gpus", [])
    assert written.get("summary", {}).get("gpus", 0) == len(listed)


def test_the_rules_are_installed_within_the_api_servers_cel_cost_budget(
    custom: client.CustomObjectsApi, k8s: client.ApiClient
) -> None:
    """The API server estimates every rule's cost from the list bounds (maxItems) when the CRD
    is created, and refuses a CRD over budget: these were accepted, unchanged."""
    crd = client.ApiextensionsV1Api(k8s).read_custom_resource_definition(f"{PLURAL}.{G}")
    schema = crd.spec.versions[0].schema.open_apiv3_schema
    installed = schema.properties["status"].x_kubernetes_validations
    assert [rule.rule for rule in installed] == [rule["rule"] for rule in models.SUMMARY_RULES]
