"""Judge tokens, calls and cost of a run, summed from its verdict records. No pytest imports.

A verdict from the cache spent nothing this run: its tokens (recorded when it was judged) count
as *saved*, with its samples as the judge calls saved. A repeated verdict that is only partly
cached counts as spent. Cost needs ``llm_prices`` lines; there is no built-in price table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Prices = Mapping[str, tuple[float, float]]


@dataclass
class Tokens:
    prompt: int = 0
    completion: int = 0

    def add(self, usage: Mapping[str, Any]) -> None:
        self.prompt += _int(usage.get("prompt_tokens"))
        self.completion += _int(usage.get("completion_tokens"))

    def cost(self, price: tuple[float, float]) -> float:
        return (self.prompt * price[0] + self.completion * price[1]) / 1_000_000


@dataclass
class RunUsage:
    """Tokens per judge, spent this run and saved by the cache."""

    judge_calls: int = 0
    cached_calls: int = 0
    spent: dict[str, Tokens] = field(default_factory=dict)
    saved: dict[str, Tokens] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        if record.get("error"):
            return
        judge = str(record.get("judge") or "")
        usage = record.get("usage") or {}
        self.judge_calls += _int(record.get("judge_calls"))
        if record.get("cached"):
            self.cached_calls += max(1, len(record.get("samples") or ()))
            self.saved.setdefault(judge, Tokens()).add(usage)
        elif usage:
            self.spent.setdefault(judge, Tokens()).add(usage)

    @property
    def tokens(self) -> Tokens:
        return _total(self.spent)

    @property
    def saved_tokens(self) -> Tokens:
        return _total(self.saved)

    def unpriced(self, prices: Prices) -> list[str]:
        """Judges that used tokens but have no ``llm_prices`` line."""
        return sorted(j for j in {*self.spent, *self.saved} if price_of(j, prices) is None)

    def cost(self, prices: Prices) -> float | None:
        """USD spent this run on the priced judges (None without any price)."""
        return _cost(self.spent, prices)

    def saved_cost(self, prices: Prices) -> float | None:
        """USD the cache saved on the priced judges (None without any price)."""
        return _cost(self.saved, prices)

    def as_dict(self, prices: Prices) -> dict[str, Any]:
        """Plain values for the results file's run record, JUnit and HTML."""
        tokens, saved = self.tokens, self.saved_tokens
        return {
            "judge_calls": self.judge_calls, "cached_calls_saved": self.cached_calls,
            "prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion,
            "saved_prompt_tokens": saved.prompt, "saved_completion_tokens": saved.completion,
            "cost_usd": _round(self.cost(prices)), "cost_saved_usd": _round(self.saved_cost(prices)),
            "unpriced_judges": self.unpriced(prices) if prices else [],
        }

    def summary_line(self, prices: Prices) -> str:
        """``judge tokens: 1,234 prompt / 56 completion | cached calls saved: 2 | cost: ...``"""
        tokens = self.tokens
        line = (f"judge tokens: {tokens.prompt:,} prompt / {tokens.completion:,} completion | "
                f"cached calls saved: {self.cached_calls}")
        cost = self.cost(prices)
        if cost is not None:
            line += f" | cost: {money(cost)} (cache saved {money(self.saved_cost(prices) or 0.0)})"
            unpriced = self.unpriced(prices)
            if unpriced:
                line += f"; no price for {', '.join(unpriced)}"
        return line


def price_of(judge: str, prices: Prices) -> tuple[float, float] | None:
    """The price line for ``backend:model``: by the whole spec, else by the model name."""
    if judge in prices:
        return prices[judge]
    return prices.get(judge.partition(":")[2])


def money(value: float) -> str:
    """USD with enough digits for a cheap run (``$0.000123``)."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def _cost(tokens: Mapping[str, Tokens], prices: Prices) -> float | None:
    if not prices:
        return None
    return sum(t.cost(p) for judge, t in tokens.items() if (p := price_of(judge, prices)) is not None)


def _total(tokens: Mapping[str, Tokens]) -> Tokens:
    total = Tokens()
    for t in tokens.values():
        total.prompt += t.prompt
        total.completion += t.completion
    return total


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 8)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
