"""Correctness from a local model's likelihoods: does the ANSWER make the REFERENCE more likely?

Asked whether an answer agrees with a reference, a 135M model says yes to almost anything (every
yes/no wording tried on the TruthfulQA dev split scored about as well as a coin), and asked
nothing it prefers the common misconceptions TruthfulQA's wrong answers state. What it does
well is predict text: an answer that states the reference's fact makes the reference easier to
predict. So, for a local causal LM, ``correctness`` with a reference is scored as::

    gain  = mean log p(reference | question, answer) - mean log p(reference | question)
    score = 1 / (1 + exp(-(gain - GAIN_OFFSET) / GAIN_SCALE))

(means over the reference's tokens; the question is the user turn of the model's chat template,
the answer the assistant's reply, then ``In other words:`` and the reference). A score of 0.5
is a gain of :data:`GAIN_OFFSET`, the cut that best separated right from wrong answers on the
TruthfulQA dev split (so at the default threshold a verdict passes where that cut says "right");
the ranking, and with it ROC AUC and pairwise accuracy, is the gain's. Two forward
passes, nothing generated, no reason written; deterministic. ``bench/judge_agreement.py``
measures it against the yes/no form (README, "How good is the judge?").
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .base import MetricInputs

#: the gain above GAIN_OFFSET (nats per reference token) that maps to a score of about 0.73
GAIN_SCALE = 0.25
#: the gain that maps to a score of 0.5. Tuned on the tuning split only, bench/data/truthfulqa_dev.jsonl
#: (60 questions, 120 verdicts of local:smollm2-135m), on 2026-12-01 with
#: ``OMP_NUM_THREADS=1 python bench/judge_agreement.py bench/data/truthfulqa_dev.jsonl --concurrency 16
#: --judge local:smollm2-135m --metric correctness --dump dev.jsonl``: the cuts of the dumped gains
#: with the highest balanced accuracy (Youden's J) lie between -0.08 and -0.04 (0.667 against 0.633
#: at a gain of 0); this is their middle, rounded. Never tuned on the held-out sets or the example suite.
GAIN_OFFSET = -0.06
BRIDGE = "\nIn other words: "


class LikelihoodModel(Protocol):
    """A causal LM that scores text: the mean log-probability of each continuation after its context."""

    def mean_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...

    def chat_prefix(self, user: str) -> str:
        """The prompt text up to where the assistant's reply to ``user`` starts."""
        ...


@dataclass(frozen=True)
class ReferenceGain:
    """The likelihood form of a reference-based metric (see the module doc)."""

    name: str
    max_chars: int = 1000
    version: str = "gain-2"

    def fingerprint(self) -> str:
        blob = f"{self.name}|{self.version}|{BRIDGE!r}|{GAIN_SCALE}|{GAIN_OFFSET}|{self.max_chars}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _clip(self, text: str | None) -> str:
        text = text or ""
        return text if len(text) <= self.max_chars else text[: self.max_chars - 1] + "…"

    def score(self, model: LikelihoodModel, inputs: MetricInputs) -> tuple[float, str, dict[str, float]]:
        """``(score in [0, 1], reason, details)`` for one answer."""
        question = self._clip(inputs.input) or "Answer the question."
        answer, reference = self._clip(inputs.output), self._clip(inputs.expected)
        prefix = model.chat_prefix(question)
        with_answer, without = model.mean_logprobs([
            (prefix + answer + BRIDGE, reference),
            (prefix + BRIDGE.lstrip("\n"), reference),
        ])
        gain = with_answer - without
        score = 1.0 / (1.0 + math.exp(-(gain - GAIN_OFFSET) / GAIN_SCALE))
        verb = "more" if gain > 0 else "less"
        reason = (f"likelihood check (no reason written): the answer makes the reference {verb} likely "
                  f"to the local model ({gain:+.3f} nats per reference token)")
        return score, reason, {"gain": round(gain, 6), "logprob_with_answer": round(with_answer, 6),
                               "logprob_without": round(without, 6)}


#: (context, continuation) -> mean log-prob, per engine: the pass without the answer is the same
#: for every answer to one question and reference (both candidates of a pair, repeated samples)
_REMEMBERED = 512
_MEMOS: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[str, str], float]] = weakref.WeakKeyDictionary()


class EngineLikelihood:
    """:class:`LikelihoodModel` over a local judge's loaded model (forward passes on the torch thread)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.memo = _MEMOS.setdefault(engine, OrderedDict())

    def chat_prefix(self, user: str) -> str:
        return str(self.engine.render([{"role": "user", "content": user}]))

    def mean_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        from ..torch_thread import run_on_torch_thread

        return run_on_torch_thread(self._mean_logprobs, list(pairs))

    def _mean_logprobs(self, pairs: list[tuple[str, str]]) -> list[float]:
        torch = self.engine.torch
        tokenizer, model = self.engine.tokenizer, self.engine.model
        out = []
        with torch.inference_mode():
            for context, continuation in pairs:
                if (context, continuation) in self.memo:
                    self.memo.move_to_end((context, continuation))
                    out.append(self.memo[context, continuation])
                    continue
                head = tokenizer.encode(context, add_special_tokens=False)
                tail = tokenizer.encode(continuation, add_special_tokens=False) or [tokenizer.eos_token_id]
                ids = torch.tensor([head + tail], device=model.device)
                logits = model(input_ids=ids).logits[0, len(head) - 1:-1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                picked = logprobs[torch.arange(len(tail), device=logits.device), ids[0, len(head):]]
                out.append(float(picked.mean()))
                self.memo[context, continuation] = out[-1]
                if len(self.memo) > _REMEMBERED:
                    self.memo.popitem(last=False)
        return out


def likelihood_model(judge: Any) -> LikelihoodModel | None:
    """A likelihood scorer over ``judge``'s model when it is a local judge with one loaded, else None."""
    engine = getattr(judge, "engine", None)
    if engine is None or not all(hasattr(engine, name) for name in ("model", "tokenizer", "render", "torch")):
        return None
    return EngineLikelihood(engine)
