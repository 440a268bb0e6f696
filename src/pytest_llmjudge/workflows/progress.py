"""A progress bar on stderr, drawn only on a terminal and never with ``--quiet``."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

_REDRAW_S = 0.1


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``label [#####.....] 40/100 (2 failed, 5 cached) 3.1/s ETA 0:19``, redrawn in place.

    :meth:`message` prints a line (a row's error, a note) above the bar. Messages are always
    printed; only the bar is suppressed off a terminal or when ``quiet``.
    """

    def __init__(self, total: int, label: str, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(0, total)
        self.label = label
        self.enabled = not quiet and _is_tty(self.stream) and self.total > 0
        self.done = 0
        self.failed = 0
        self.cached = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._visible = False
        self._lock = threading.Lock()

    def advance(self, n: int = 1, *, failed: bool = False, cached: bool = False) -> None:
        with self._lock:
            self.done += n
            if failed:
                self.failed += n
            if cached:
                self.cached += n
            now = time.monotonic()
            if self.enabled and (now - self._drawn_at >= _REDRAW_S or self.done >= self.total):
                self._draw(now)

    def message(self, text: str) -> None:
        with self._lock:
            self._clear()
            print(text, file=self.stream, flush=True)
            if self.enabled and self.done:
                self._draw(time.monotonic())

    def close(self) -> None:
        with self._lock:
            if self._visible:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
                self._visible = False

    # -- drawing
    def line(self, now: float | None = None) -> str:
        """The bar's text (without the carriage return)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        extra = []
        if self.failed:
            extra.append(f"{self.failed} failed")
        if self.cached:
            extra.append(f"{self.cached} cached")
        notes = f" ({', '.join(extra)})" if extra else ""
        if self.done >= self.total:
            eta = f"in {_clock(elapsed)}"
        elif rate > 0:
            eta = f"ETA {_clock((self.total - self.done) / rate)}"
        else:
            eta = "ETA ?"
        tail = f" {self.done}/{self.total}{notes} {rate:.1f}/s {eta}"
        width = shutil.get_terminal_size((80, 20)).columns
        room = max(10, min(40, width - len(self.label) - len(tail) - 4))
        filled = int(room * self.done / self.total) if self.total else room
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{tail}"[: max(20, width - 1)]

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._drawn_at = now
        self._visible = True

    def _clear(self) -> None:
        if self._visible:
            self.stream.write("\r\x1b[K")
            self._visible = False
