"""The API server's message is what a failed request reports."""

import pydantic
import pytest

from gpu_inventory.api.errors import status_message, validation_summary

REFUSED = (
    '{"kind":"Status","status":"Failure","code":422,'
    '"message":"GPUNode.gpuinventory.io \\"n1\\" is invalid: status.gpus: Too many: 40"}'
)


@pytest.mark.parametrize(
    ("body", "want"),
    [
        pytest.param(
            REFUSED,
            'GPUNode.gpuinventory.io "n1" is invalid: status.gpus: Too many: 40',
            id="status",
        ),
        pytest.param(
            REFUSED.encode(),
            'GPUNode.gpuinventory.io "n1" is invalid: status.gpus: Too many: 40',
            id="bytes",
        ),
        pytest.param(
            "<html>\n  502 Bad Gateway\n</html>", "<html> 502 Bad Gateway </html>", id="not-json"
        ),
        pytest.param("x" * 1000, "x" * 300, id="long-raw-body-trimmed"),
        pytest.param('{"kind":"Status"}', "", id="no-message"),
        pytest.param("[1, 2]", "", id="json-not-an-object"),
        pytest.param(None, "", id="no-body"),
    ],
)
def test_status_message(body: object, want: str) -> None:
    assert status_message(body) == want


def test_a_validation_summary_names_each_field_and_stops_at_the_limit() -> None:
    class Two(pydantic.BaseModel):
        a: int
        b: int

    with pytest.raises(pydantic.ValidationError) as raised:
        Two.model_validate({"a": "x", "b": "y"})
    assert validation_summary(raised.value).startswith("a: Input should be a valid integer")
    assert "; b: " in validation_summary(raised.value)
    assert "; b: " not in validation_summary(raised.value, limit=1)
