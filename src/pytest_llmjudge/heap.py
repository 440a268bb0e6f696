"""Keep a judge SDK's import out of every later garbage collection.

Importing ``openai``, ``huggingface_hub`` or ``torch`` adds tens of thousands of long-lived
objects (SDK types, pydantic models) to the heap, and every full collection walks all of
them again: with ``openai`` loaded, Python's automatic collections during a 200-case run and
the ones at exit cost about as much CPU as the judge calls themselves. After such an import
the next test boundary collects once and moves the heap to the permanent generation
(:func:`gc.freeze`, made for this): objects made later are collected as usual.

The freeze happens on the main thread between two tests, never inside one, so nothing a
test holds is frozen with it.

While such an import runs, and while a local judge loads, automatic collections are paused
(:func:`collections_paused`): loading SmolLM2 allocates about a million objects, and the
collector's passes over them took 1.3 s of a 4.2 s load. The one collection at the next test
boundary takes about 0.4 s.
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_pending = threading.Event()
_pause_lock = threading.Lock()
_pause_depth = 0
_was_enabled = False


@contextmanager
def collections_paused() -> Iterator[None]:
    """No automatic garbage collection inside (nestable, any thread); the heap is frozen after.

    For building a judge: many long-lived objects, few of them garbage. Collection resumes
    (if it was on) when the outermost block ends, and the next test boundary collects once.
    """
    global _pause_depth, _was_enabled
    with _pause_lock:
        if _pause_depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _was_enabled:
                gc.enable()
        _pending.set()


def import_heavy(name: str) -> ModuleType:
    """``importlib.import_module(name)``; a first import freezes the heap at the next test boundary."""
    if name in sys.modules:
        return sys.modules[name]
    with collections_paused():
        return importlib.import_module(name)


def freeze_if_pending() -> None:
    """Collect once, then freeze the heap; a no-op unless :func:`import_heavy` imported something."""
    if not _pending.is_set():
        return
    _pending.clear()
    gc.collect()
    gc.freeze()
