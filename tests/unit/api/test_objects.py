"""Reading raw objects into models: good ones parse, bad ones fail with a message that says why."""

import pytest

from gpu_inventory.api import objects
from gpu_inventory.api.models import GPUInventorySpec


def test_an_empty_inventory_reads_with_defaults() -> None:
    inventory = objects.read_inventory({"metadata": {"name": "cluster"}})
    assert inventory.spec == GPUInventorySpec()
    assert inventory.spec.primary_resource == "nvidia.com/gpu"
    assert inventory.status is None


def test_wire_names_are_camel_case() -> None:
    wire = objects.inventory_object()
    assert wire["spec"]["agentStaleAfterSeconds"] == 300
    assert "nvidia.com/mig-*" in wire["spec"]["resourceNames"]


def test_a_gpunode_is_owned_by_its_node() -> None:
    body = objects.gpunode_object("node-a", "uid-1")
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", "node-a", "uid-1")
    assert objects.read_gpunode(body).metadata.name == "node-a"


def test_a_broken_gpunode_is_refused_with_the_field_named() -> None:
    body = {
        "metadata": {"name": "node-b"},
        "status": {"gpus": [{"uuid": "GPU-1", "index": -3, "memoryTotal": "lots"}]},
    }
    with pytest.raises(objects.InvalidObjectError) as error:
        objects.read_gpunode(body)
    message = str(error.value)
    assert "GPUNode 'node-b' is invalid" in message
    assert "status.gpus.0.index" in message
    assert "status.gpus.0.memoryTotal" in message


def test_an_object_whose_metadata_is_not_a_mapping_is_refused_not_crashed_on() -> None:
    with pytest.raises(objects.InvalidObjectError, match=r"GPUNode '\?' is invalid: metadata"):
        objects.read_gpunode({"metadata": "node-c", "status": {}})
