"""What was judged: the texts and the dataset case of one verdict, as the reports carry them.

One dict per ``assert_llm_score`` call: ``input``, ``output``, ``expected``, ``context``,
``criteria`` (each as judged, with credentials redacted; absent when not given) and ``case``
(the dataset row's ``id`` and its other columns, when the test's ``case`` came from
``@pytest.mark.llm_dataset``). With ``--llm-results-texts off`` only ``case.id`` is kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from ..secrets import redact

if TYPE_CHECKING:
    from ..datasets import Case

TEXT_FIELDS = ("input", "output", "expected", "context", "criteria")


def _as_text(value: Any) -> str:
    """A check's ``expected`` may be a value or a JSON schema: reports carry it as JSON text."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def judged_texts(inputs: Mapping[str, str | None], case: Any = None, *, keep_texts: bool = True) -> dict[str, Any]:
    """The texts of one verdict (``inputs``: metric input name -> text) and its dataset case."""
    texts: dict[str, Any] = {}
    if keep_texts:
        texts = {name: redact(_as_text(value)) for name in TEXT_FIELDS if (value := inputs.get(name))}
    case_values = case_columns(case, keep_texts=keep_texts)
    if case_values is not None:
        texts["case"] = case_values
    return texts


def item_texts(item: Any, inputs: Mapping[str, str | None], settings: Any) -> dict[str, Any]:
    """:func:`judged_texts` of one test item, plus ``groups``: its value of each group-by column
    (``--llm-group-by`` / ini ``llm_group_by`` and the ``llm_dataset`` marker's ``group_by``)."""
    case = getattr(item, "funcargs", {}).get("case")
    texts = judged_texts(inputs, case, keep_texts=settings.results_texts)
    marker = item.get_closest_marker("llm_dataset")
    columns = [*settings.group_by, *_names(marker.kwargs.get("group_by") if marker is not None else None)]
    groups = {c: _group_value(case[c]) for c in dict.fromkeys(columns) if c in case} if _is_case(case) else {}
    if groups:
        texts["groups"] = groups
    return texts


def check_group_by(value: Any, cases: list[Any]) -> str | None:
    """What is wrong with an ``llm_dataset(group_by=...)`` argument, or None."""
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(v, str) and v for v in _names(value)):
        return f"group_by takes a column name or a list of them, got {value!r}"
    columns = {c for case in cases for c in case}
    missing = [c for c in _names(value) if c not in columns]
    if missing:
        return (f"group_by column(s) {', '.join(missing)} not in the dataset; its columns: "
                f"{', '.join(sorted(columns)) or '-'}")
    return None


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _group_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value == "":
        return "(empty)"
    return redact(str(value))


def _is_case(value: Any) -> TypeGuard[Case]:
    from ..datasets import Case

    return isinstance(value, Case)


def case_columns(case: Any, *, keep_texts: bool = True) -> dict[str, Any] | None:
    """``{"id": ..., column: value, ...}`` of a dataset Case (None for anything else)."""
    from ..datasets import Case

    if not isinstance(case, Case):
        return None
    values: dict[str, Any] = {"id": case.id}
    if keep_texts:
        for column, value in case.items():
            if column != "id":
                values[column] = _plain(value)
    return values


def _plain(value: Any) -> Any:
    """A JSON-ready, redacted cell value (nested values are kept as JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact(value)
    try:
        return json.loads(redact(json.dumps(value, ensure_ascii=False, default=str)))
    except (TypeError, ValueError):
        return redact(str(value))
