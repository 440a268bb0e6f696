"""``llmjudge sample``: a reproducible random sample of a dataset, optionally stratified."""

from __future__ import annotations

import argparse
import math
import random

from ..datasets import DEFAULT_SEED
from . import CLIError
from .io import Row, cell, check_output_path, read_table, table_format, write_table


def parse_seed(text: str | None) -> int | str:
    if text is None:
        return DEFAULT_SEED
    try:
        return int(text)
    except ValueError:
        return text


def allocate(sizes: list[int], n: int) -> list[int]:
    """Proportional allocation of ``n`` over strata of ``sizes`` (largest remainder method).

    Every stratum gets at least one when ``n >= len(sizes)``; no stratum gets more than its size.
    """
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    quotas = [n * s / total for s in sizes]
    alloc = [math.floor(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - alloc[i]), i))
    remaining = n - sum(alloc)
    for i in order:
        if remaining <= 0:
            break
        if alloc[i] < sizes[i]:
            alloc[i] += 1
            remaining -= 1
    if n >= len(sizes):
        for i in range(len(sizes)):
            if alloc[i] == 0 and sizes[i] > 0:
                donor = max(range(len(sizes)), key=lambda j: (alloc[j], -j))
                if alloc[donor] <= 1:
                    break
                alloc[donor] -= 1
                alloc[i] += 1
    return alloc


def draw(
    rows: list[Row], n: int, seed: int | str, by: str | None = None
) -> tuple[list[Row], list[tuple[str, int, int]]]:
    """The sampled rows in file order, and per stratum (value, picked, size)."""
    rng = random.Random(seed)
    if by is None:
        if n >= len(rows):
            return list(rows), []
        picked = sorted(rng.sample(range(len(rows)), n))  # as load_cases(sample=n, seed=seed)
        return [rows[i] for i in picked], []
    strata: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        strata.setdefault(cell(row.get(by)), []).append(i)
    names = list(strata)
    alloc = allocate([len(strata[s]) for s in names], n)
    chosen: list[int] = []
    report = []
    for name, k in zip(names, alloc):
        members = strata[name]
        chosen.extend(rng.sample(members, k) if k < len(members) else members)
        report.append((name, k, len(members)))
    return [rows[i] for i in sorted(chosen)], report


def run(args: argparse.Namespace) -> int:
    table_format(args.output)
    check_output_path(args.output, [args.input], guard=False)
    table = read_table(args.input, auto_id=False)
    if args.by is not None and not table.has_column(args.by):
        raise CLIError(
            f"{table.shown}: --by column {args.by!r} not found; columns: {', '.join(table.columns)}"
        )
    seed = parse_seed(args.seed)
    rows, strata = draw(table.rows, args.n, seed, args.by)
    write_table(args.output, (r.data for r in rows), table.columns)
    if not args.quiet:
        note = f" (the file has only {len(table.rows)})" if args.n > len(table.rows) else ""
        print(f"sampled {len(rows)} of {len(table.rows)} rows{note} with seed {seed!r} -> {args.output}")
        if strata:
            shown = ", ".join(f"{name or '(empty)'}: {k}/{size}" for name, k, size in strata)
            print(f"  by {args.by}: {shown}")
    return 0
