"""Dataset workflows behind the ``llmjudge`` command line (:mod:`pytest_llmjudge.cli`).

One module per command (:mod:`.sample`, :mod:`.convert`, :mod:`.augment`, :mod:`.generate`,
:mod:`.calibrate`): its ``run(args)``, given the options its :mod:`pytest_llmjudge.cli`
module declares. The shared pieces:

* :mod:`.io` reads CSV/JSON/JSONL by extension (the same rules and located error messages as
  :func:`pytest_llmjudge.load_cases`), writes them incrementally (every finished row is on
  disk, the file is valid after every row) and plans ``--resume``;
* :mod:`.runner` runs per-row model work concurrently, writes rows in input order, turns a
  failed row into an ``error`` cell instead of stopping, and drives the progress bar;
* :mod:`.common` builds the judge and cache every model command shares;
* :mod:`.generation` produces free text with a judge backend (``generate``);
* :mod:`.progress` is the progress bar on stderr.
"""

from __future__ import annotations

from ..errors import CLIError

__all__ = ["CLIError"]
