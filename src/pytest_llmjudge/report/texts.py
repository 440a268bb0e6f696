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
from typing import Any

from ..secrets import redact

TEXT_FIELDS = ("input", "output", "expected", "context", "criteria")


def judged_texts(inputs: Mapping[str, str | None], case: Any = None, *, keep_texts: bool = True) -> dict[str, Any]:
    """The texts of one verdict (``inputs``: metric input name -> text) and its dataset case."""
    texts: dict[str, Any] = {}
    if keep_texts:
        texts = {name: redact(value) for name in TEXT_FIELDS if (value := inputs.get(name))}
    case_values = case_columns(case, keep_texts=keep_texts)
    if case_values is not None:
        texts["case"] = case_values
    return texts


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
