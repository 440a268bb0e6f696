"""report/junit.py beside pytest's JUnit writer: xunit2's per-test lines, and a writer without their hook."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_llmjudge.report import junit


def test_xml_text_replaces_what_xml_cannot_hold() -> None:
    assert junit.xml_text("ding\x07 <&> \x00 \x1b[0m \t\n ok \ud7ff") == "ding#x07 <&> #x00 #x1B[0m \t\n ok \ud7ff"


def test_a_writer_without_node_reporter_leaves_the_values_out_with_one_warning(pytester: pytest.Pytester) -> None:
    """A pytest whose JUnit writer lacks ``node_reporter(report).append``: no crash, one warning per run."""
    from _pytest.junitxml import xml_key

    class WriterWithoutNodeReporter:
        pass

    config = pytester.parseconfigure("--junitxml", str(pytester.path / "junit.xml"))
    real = config.stash[xml_key]
    config.stash[xml_key] = WriterWithoutNodeReporter()
    report: Any = object()
    props = [("llm.correctness.score", "0.5000")]
    try:
        with pytest.warns(pytest.PytestWarning, match="left out of the XML"):
            junit.write_system_out(config, report, props)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            junit.write_system_out(config, report, props)
        assert not seen, [str(w.message) for w in seen]
    finally:
        config.stash[xml_key] = real  # pytest's unconfigure unregisters the real writer
