"""Garbage-collector care around the plugin's own heavy loads; nothing process-wide by default.

Loading a local model or embedder allocates about a million long-lived objects, and the
collector's automatic passes over them took 1.3 s of a 4.2 s SmolLM2 load. :func:`collections_paused`
pauses automatic collection for the duration of such a load only, and restores the collector as
it found it.

Opt-in (``LLMJUDGE_GC_FREEZE=1``): after a judge SDK's first import (:func:`import_heavy`) or a
model load, the next test boundary collects once and moves the heap to the permanent generation
(:func:`gc.freeze`), so later collections stop re-walking the SDK's objects. That freezes
whatever the session holds at that moment (the user's fixtures and modules included), which a
leak checker would see: it is never done unless asked for.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: the environment variable that opts into the heap freeze at the next test boundary
FREEZE_ENV = "LLMJUDGE_GC_FREEZE"

_pending = threading.Event()
_pause_lock = threading.Lock()
_pause_depth = 0
_was_enabled = False


def freeze_enabled() -> bool:
    """Whether the user opted into :func:`freeze_if_pending` (``LLMJUDGE_GC_FREEZE=1``)."""
    return os.environ.get(FREEZE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _schedule_freeze() -> None:
    if freeze_enabled():
        _pending.set()


@contextmanager
def collections_paused() -> Iterator[None]:
    """No automatic garbage collection inside (nestable, any thread), for loading a model.

    Collection resumes (if it was on) when the outermost block ends.
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
        _schedule_freeze()


def import_heavy(name: str) -> ModuleType:
    """``importlib.import_module(name)``; with the opt-in freeze, a first import schedules one."""
    if name in sys.modules:
        return sys.modules[name]
    module = importlib.import_module(name)
    _schedule_freeze()
    return module


def freeze_if_pending() -> None:
    """With ``LLMJUDGE_GC_FREEZE=1`` only: collect once, then freeze the heap, after a heavy import or load."""
    if not _pending.is_set():
        return
    _pending.clear()
    if not freeze_enabled():
        return
    gc.collect()
    gc.freeze()
