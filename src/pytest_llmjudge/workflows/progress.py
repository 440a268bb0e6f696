"""A progress bar on stderr (tqdm's), drawn only on a terminal and never with ``--quiet``."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from tqdm import tqdm

#: ``label [#####.....] 40/100, 2 failed, 5 cached 3.10 rows/s ETA 00:19``
_BAR_FORMAT = "{desc} [{bar}] {n_fmt}/{total_fmt}{postfix} {rate_fmt} ETA {remaining}"


class Progress:
    """Counts finished rows (with failed and cached ones) on a tqdm bar, redrawn in place.

    :meth:`message` prints a line (a row's error, a note) above the bar. Messages are always
    printed; only the bar is suppressed off a terminal (tqdm's ``disable=None``), when
    ``quiet`` or when there is nothing to do.
    """

    def __init__(self, total: int, label: str, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(0, total)
        self.label = label
        self.done = 0
        self.failed = 0
        self.cached = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._bar = tqdm(total=self.total, desc=label, file=self.stream, unit=" rows", ascii=".#",
                         bar_format=_BAR_FORMAT, disable=True if quiet or not self.total else None)

    @property
    def enabled(self) -> bool:
        """Whether the bar is drawn."""
        return not self._bar.disable

    def advance(self, n: int = 1, *, failed: bool = False, cached: bool = False) -> None:
        with self._lock:
            self.done += n
            self.failed += n if failed else 0
            self.cached += n if cached else 0
            if self.enabled:
                self._bar.set_postfix_str(self._notes(), refresh=False)
                self._bar.update(n)

    def message(self, text: str) -> None:
        with self._lock:
            self._bar.write(text, file=self.stream)

    def close(self) -> None:
        with self._lock:
            self._bar.close()

    def line(self) -> str:
        """The bar's text as it is drawn now."""
        return tqdm.format_meter(self.done, self.total, time.monotonic() - self._started, prefix=self.label,
                                 unit=" rows", ascii=".#", bar_format=_BAR_FORMAT, postfix=self._notes(),
                                 ncols=80)

    def _notes(self) -> str:
        notes = [f"{self.failed} failed"] if self.failed else []
        notes += [f"{self.cached} cached"] if self.cached else []
        return ", ".join(notes)
