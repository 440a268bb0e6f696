"""MaxChars / MaxItems: verdict-schema bounds that advertise a limit and truncate instead of rejecting."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, create_model

from pytest_llmjudge.metrics import MaxChars, MaxItems, bounded_list, bounded_str


class Bounded(BaseModel):
    reason: Annotated[str, MaxChars(5)]
    items: Annotated[list[Annotated[str, MaxChars(2)]], MaxItems(3)]


def test_schema_advertises_the_limits() -> None:
    properties = Bounded.model_json_schema()["properties"]
    assert properties["reason"] == {"maxLength": 5, "title": "Reason", "type": "string"}
    assert properties["items"]["maxItems"] == 3
    assert properties["items"]["items"] == {"maxLength": 2, "type": "string"}


def test_longer_values_are_truncated_not_rejected() -> None:
    verdict = Bounded.model_validate({"reason": "abcdefgh", "items": ["xyz", "a", "bc", "def"]})
    assert verdict.reason == "abcde"
    assert verdict.items == ["xy", "a", "bc"]


def test_runtime_helpers_build_the_same_bounds() -> None:
    model = create_model("Dynamic", reason=(bounded_str(5), ...), items=(bounded_list(str, 3), ...))
    schema = model.model_json_schema()["properties"]
    assert schema["reason"]["maxLength"] == 5 and schema["items"]["maxItems"] == 3
    dumped = model(reason="abcdefgh", items=["1", "2", "3", "4"]).model_dump()
    assert dumped == {"reason": "abcde", "items": ["1", "2", "3"]}
