"""Keep a judge SDK's import out of every later garbage collection.

Importing ``openai``, ``huggingface_hub`` or ``torch`` adds tens of thousands of long-lived
objects (SDK types, pydantic models) to the heap, and every full collection walks all of
them again: with ``openai`` loaded, Python's automatic collections during a 200-case run and
the ones at exit cost about as much CPU as the judge calls themselves. After such an import
the next test boundary collects once and moves the heap to the permanent generation
(:func:`gc.freeze`, made for this): objects made later are collected as usual.

The freeze happens on the main thread between two tests, never inside one, so nothing a
test holds is frozen with it.
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from types import ModuleType

_pending = threading.Event()


def import_heavy(name: str) -> ModuleType:
    """``importlib.import_module(name)``; a first import freezes the heap at the next test boundary."""
    fresh = name not in sys.modules
    module = importlib.import_module(name)
    if fresh:
        _pending.set()
    return module


def freeze_if_pending() -> None:
    """Collect once, then freeze the heap; a no-op unless :func:`import_heavy` imported something."""
    if not _pending.is_set():
        return
    _pending.clear()
    gc.collect()
    gc.freeze()
