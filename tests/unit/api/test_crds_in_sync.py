"""`crds/` is generated from the models; this fails when the two drift (run `make crds`)."""

from gpu_inventory.api import crdgen
from gpu_inventory.testing.binaries import REPO_ROOT


def test_crds_directory_matches_the_models() -> None:
    generated = crdgen.generated()
    on_disk = {p.name: p.read_text() for p in (REPO_ROOT / "crds").glob("gpuinventory.io_*.yaml")}
    assert sorted(on_disk) == sorted(generated), "run `make crds`"
    for name, content in generated.items():
        assert on_disk[name] == content, f"{name} is stale: run `make crds`"


def test_every_list_and_string_in_the_schemas_is_bounded() -> None:
    unbounded: list[str] = []

    def walk(schema: dict[str, object], path: str) -> None:
        kind = schema.get("type")
        if kind == "array" and "maxItems" not in schema:
            unbounded.append(path)
        if kind == "string" and not ({"maxLength", "enum", "format"} & schema.keys()):
            unbounded.append(path)
        if kind == "object" and "additionalProperties" in schema and "maxProperties" not in schema:
            unbounded.append(path)
        for key in ("properties",):
            for name, sub in dict(schema.get(key) or {}).items():  # type: ignore[call-overload]
                walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            sub = schema.get(key)
            if isinstance(sub, dict):
                walk(sub, f"{path}[]")

    for crd in (crdgen.inventory_crd(), crdgen.gpunode_crd()):
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            if part in root["properties"]:
                walk(root["properties"][part], f"{crd['spec']['names']['kind']}.{part}")
    assert unbounded == []
