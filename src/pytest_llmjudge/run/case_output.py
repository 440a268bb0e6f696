"""Each concurrent case's ``print`` and logging output, kept apart per thread.

pytest captures one test at a time: a single global capture buffer and one log handler for
the current test. While several cases run at once, ``sys.stdout``/``sys.stderr`` are routed
by thread to the buffer of the case that thread is running (threads a case starts itself are
not followed: their output goes where it would without capture), and log records to a
per-case list; each phase's text lands in that case's report as "Captured stdout/stderr/log"
sections, as pytest's own capture would put it. The live log (``log_cli``) and the log file
still see every record.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import pytest

from .pytest_internals import log_formatter


class _Router:
    """A stand-in for sys.stdout/sys.stderr that writes to the current thread's case buffer."""

    def __init__(self, fallback: TextIO, local: threading.local, name: str, tee: bool) -> None:
        self._fallback = fallback
        self._local = local
        self._name = name
        self._tee = tee

    def write(self, text: str) -> int:
        buffer: io.StringIO | None = getattr(self._local, self._name, None)
        if buffer is None:
            return self._fallback.write(text)
        if self._tee:
            self._fallback.write(text)
        return buffer.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if getattr(self._local, self._name, None) is None or self._tee:
            self._fallback.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class _RecordRouter(logging.Handler):
    def __init__(self, local: threading.local, level: int) -> None:
        super().__init__(level)
        self._local = local

    def emit(self, record: logging.LogRecord) -> None:
        lines: list[str] | None = getattr(self._local, "log", None)
        if lines is not None:
            try:
                lines.append(self.format(record))
            except Exception:  # noqa: BLE001 - as logging.Handler does
                self.handleError(record)


class CaseOutput:
    """Installed while a group of cases runs; :meth:`phase` captures one phase of one case."""

    def __init__(self, config: pytest.Config) -> None:
        pm = config.pluginmanager
        mode = config.getoption("capture", "fd") if pm.getplugin("capturemanager") is not None else "no"
        self.capture_streams = mode != "no"
        self.tee = mode == "tee-sys"
        self.capture_logs = pm.getplugin("logging-plugin") is not None
        self._local = threading.local()
        self._level = _log_level(config)
        self._handler = _RecordRouter(self._local, self._level or 0)
        self._handler.setFormatter(log_formatter(config))
        self._saved: tuple[Any, Any] | None = None
        self._root_level: int | None = None

    def install(self) -> None:
        if self.capture_streams:
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout = _Router(sys.stdout, self._local, "out", self.tee)
            sys.stderr = _Router(sys.stderr, self._local, "err", self.tee)
        if self.capture_logs:
            root = logging.getLogger()
            root.addHandler(self._handler)
            if self._level is not None:
                self._root_level = root.level
                root.setLevel(min(root.level, self._level))

    def uninstall(self) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if self.capture_logs:
            root = logging.getLogger()
            root.removeHandler(self._handler)
            if self._root_level is not None:
                root.setLevel(self._root_level)
                self._root_level = None

    @contextmanager
    def phase(self, item: pytest.Item, when: str) -> Iterator[None]:
        """Route this thread's output to ``item``'s ``when`` sections until the block ends."""
        local = self._local
        out, err = (io.StringIO(), io.StringIO()) if self.capture_streams else (None, None)
        log: list[str] | None = [] if self.capture_logs else None
        local.out, local.err, local.log = out, err, log
        try:
            yield
        finally:
            local.out = local.err = local.log = None
            if out is not None and err is not None:
                item.add_report_section(when, "stdout", out.getvalue())
                item.add_report_section(when, "stderr", err.getvalue())
            if log:
                item.add_report_section(when, "log", "\n".join(log))


def _log_level(config: pytest.Config) -> int | None:
    value = config.getoption("log_level", None) or config.getini("log_level")
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    return level if isinstance(level, int) else None
