"""What we add to pytest's JUnit XML.

- xunit1 (and legacy): each testcase carries ``<properties>`` with ``llm.<metric>.score``,
  ``.threshold``, ``.passed``, ``.reason``, ``.judge``, ``.cached`` (and ``.error``); a
  repeated verdict adds ``.samples``, ``.unstable`` and ``.decision``.
- xunit2 (pytest's default): its schema allows no properties on a testcase, so the same
  ``llm.<metric>.<field>=value`` lines go into the testcase's ``<system-out>``.
- Both: the testsuite's ``<properties>`` carry ``llm.<metric>.n``, ``.mean``, ``.pass_rate``,
  ``.judge_errors``, ``llm.judge`` and the run's usage: ``llm.judge_calls``,
  ``llm.cached_calls_saved``, ``llm.prompt_tokens``, ``llm.completion_tokens``,
  ``llm.saved_prompt_tokens``, ``llm.saved_completion_tokens`` and, with ``llm_prices``,
  ``llm.cost_usd``, ``llm.cost_saved_usd`` (``llm.unpriced_judges`` names judges without a price).
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from .collect import RunSummary
from .groups import junit_properties as junit_group_properties
from .usage import Prices


def per_test_properties(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    props: list[tuple[str, str]] = []
    for record in records:
        prefix = f"llm.{record['metric']}"
        if record.get("error"):
            props += [(f"{prefix}.error", record["error"]), (f"{prefix}.judge", record.get("judge", ""))]
            continue
        props += [
            (f"{prefix}.score", f"{record['score']:.4f}"),
            (f"{prefix}.threshold", f"{record['threshold']:.4f}"),
            (f"{prefix}.passed", str(bool(record["passed"])).lower()),
            (f"{prefix}.reason", record.get("reason", "")),
            (f"{prefix}.judge", record.get("judge", "")),
            (f"{prefix}.cached", str(bool(record.get("cached"))).lower()),
        ]
        if record.get("samples"):
            props += [
                (f"{prefix}.samples", ",".join(f"{s:.4f}" for s in record["samples"])),
                (f"{prefix}.unstable", str(bool(record.get("unstable"))).lower()),
                (f"{prefix}.decision", record.get("decision", "")),
            ]
    return props


def suite_properties(summary: RunSummary, prices: Prices | None = None) -> list[tuple[str, str]]:
    """The testsuite's properties, from the run's summary (its prices unless given)."""
    props = [("llm.judge", ", ".join(sorted(summary.judges)))]
    for name, value in summary.usage.as_dict(summary.prices if prices is None else prices).items():
        if value is not None and value != []:
            props.append((f"llm.{name}", ",".join(value) if isinstance(value, list) else str(value)))
    for name in sorted(summary.metrics):
        m = summary.metrics[name]
        props += [
            (f"llm.{name}.n", str(m.cases)),
            (f"llm.{name}.mean", "" if m.mean_score is None else f"{m.mean_score:.4f}"),
            (f"llm.{name}.pass_rate", "" if m.pass_rate is None else f"{m.pass_rate:.4f}"),
            (f"llm.{name}.judge_errors", str(m.errors)),
        ]
    return props + junit_group_properties(summary)


def junit_family(config: pytest.Config) -> str:
    family = str(config.getini("junit_family"))
    return "xunit1" if family == "legacy" else family


def log_xml(config: pytest.Config) -> Any:
    """pytest's JUnit reporter, when --junitxml is on (None otherwise)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - pytest moved it
        return None
    return config.stash.get(xml_key, None)


#: characters XML 1.0 does not allow, even escaped (pytest's JUnit writer replaces them the same way)
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with each character XML cannot hold written as ``#xNN``."""
    return _NOT_XML.sub(lambda found: f"#x{ord(found.group()):02X}", text)


def write_system_out(config: pytest.Config, report: pytest.TestReport, props: list[tuple[str, str]]) -> None:
    """xunit2: the per-test values as ``<system-out>`` lines of the testcase.

    pytest has no public API for a testcase's content: this appends the element through its JUnit
    reporter's ``node_reporter(report).append`` (pytest 8.2 to 9.2). Where a pytest lacks them,
    the values stay out of the XML (the results file has them) and one warning says so.
    """
    xml = log_xml(config)
    if xml is None or not props:
        return
    node_reporter = getattr(xml, "node_reporter", None)
    append = getattr(node_reporter(report), "append", None) if callable(node_reporter) else None
    if not callable(append):
        if not config.stash.get(_warned_key, False):
            config.stash[_warned_key] = True
            warnings.warn(pytest.PytestWarning(
                f"llmjudge: this pytest ({pytest.__version__}) offers no way to add the per-test llm.* "
                "values to a JUnit xunit2 testcase; they are left out of the XML (use --llm-results, "
                "or -o junit_family=xunit1 for per-test properties)"), stacklevel=1)
        return
    element = ET.Element("system-out")
    element.text = xml_text("\n".join(f"{name}={' '.join(value.split())}" for name, value in props))
    append(element)


_warned_key = pytest.StashKey[bool]()
