"""GC care (heap.py): nothing process-wide by default; the heap freeze only when opted into."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from pytest_llmjudge import heap


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(heap.FREEZE_ENV, raising=False)
    heap._pending.clear()
    yield
    heap._pending.clear()
    gc.unfreeze()


@pytest.fixture
def opted_in(unfrozen: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(heap.FREEZE_ENV, "1")


def test_by_default_nothing_is_frozen(unfrozen: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    gc.unfreeze()
    heap.import_heavy("colorsys")
    with heap.collections_paused():
        pass
    heap.freeze_if_pending()
    assert gc.get_freeze_count() == 0
    assert "colorsys" in sys.modules


def test_a_first_import_freezes_the_heap_at_the_next_boundary(opted_in: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    heap.import_heavy("colorsys")
    before = gc.get_freeze_count()
    heap.freeze_if_pending()
    assert gc.get_freeze_count() > before
    assert "colorsys" in sys.modules


def test_an_already_imported_module_freezes_nothing(opted_in: None) -> None:
    heap.import_heavy("json")  # imported long ago
    gc.unfreeze()
    heap.freeze_if_pending()
    assert gc.get_freeze_count() == 0


def test_garbage_is_collected_before_the_freeze(opted_in: None, monkeypatch: pytest.MonkeyPatch) -> None:
    class Cycle:
        pass

    gc.disable()  # the cycle below must still be garbage when the freeze comes
    try:
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        monkeypatch.delitem(sys.modules, "colorsys", raising=False)
        heap.import_heavy("colorsys")
        assert alive() is not None
        heap.freeze_if_pending()
    finally:
        gc.enable()
    assert alive() is None  # collected, not frozen for the rest of the run


def test_collections_pause_nests_and_restores_the_collector(unfrozen: None) -> None:
    assert gc.isenabled()
    with heap.collections_paused():
        assert not gc.isenabled()
        with heap.collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still holds the pause
    assert gc.isenabled()
    assert not heap._pending.is_set()  # no freeze unless opted into


def test_a_paused_load_schedules_the_opt_in_freeze(opted_in: None) -> None:
    with heap.collections_paused():
        pass
    assert heap._pending.is_set()


def test_collections_pause_leaves_a_disabled_collector_disabled(unfrozen: None) -> None:
    gc.disable()
    try:
        with heap.collections_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


SUITE = """
import gc

def test_first(assert_llm_score):
    assert_llm_score("Paris.", input="Capital of France?", expected="Paris", threshold=0.0)

def test_second():
    print("FROZEN", gc.get_freeze_count())
"""


@pytest.mark.parametrize(("judge_sdk", "opt_in"), [(True, True), (False, True), (True, False)],
                         ids=["openai-judge-opted-in", "no-judge-call-opted-in", "openai-judge-default"])
def test_the_plugin_freezes_after_the_openai_import_only_when_opted_in(
        pytester: pytest.Pytester, server, judge_sdk: bool, opt_in: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SUITE if judge_sdk else SUITE.replace("assert_llm_score(", "(lambda *a, **k: None)(")
    pytester.makepyfile(test_suite=source)
    if opt_in:
        monkeypatch.setenv(heap.FREEZE_ENV, "1")
    else:
        monkeypatch.delenv(heap.FREEZE_ENV, raising=False)
    result = pytester.runpytest_subprocess(
        "-s", "--llm-judge", "openai:fake", "--llm-base-url", server.url, "--llm-cache-mode", "off",
        "--llm-concurrency", "1", "-p", "no:randomly", timeout=60,
    )
    result.assert_outcomes(passed=2)
    frozen = int(next(line for line in result.outlines if "FROZEN" in line).split("FROZEN ")[1].split()[0])
    assert (frozen > 0) is (judge_sdk and opt_in)
