"""The correctness formulations tried for the embedded judge on the TruthfulQA dev split.

Each is a Metric for ``bench/judge_agreement.py --metric correctness_variants:NAME`` (the script's
folder is on ``sys.path`` when it is run as ``python bench/judge_agreement.py``)::

    python bench/judge_agreement.py bench/data/truthfulqa_dev.jsonl --limit 20 \\
        --judge local:smollm2-135m --metric correctness_variants:yesno --metric correctness_variants:rubric

Dev results of the reply forms (20 questions, 40 verdicts each, local:smollm2-135m, 95% bootstrap
intervals):

================  ==================  ==================  ====================================
variant           ROC AUC             pairwise accuracy   note
================  ==================  ==================  ====================================
rubric            0.42 [0.29, 0.57]   0.47                0-5, reason first (30 questions)
yesno             0.53 [0.38, 0.66]   0.50 [0.30, 0.70]   the yes/no form (``compact``)
yesno_few         0.44 [0.31, 0.57]   0.45 [0.25, 0.70]   + four worked examples
agree3            0.51 [0.40, 0.61]   0.60 [0.40, 0.80]   1-3 agreement scale
same_ab           0.35 [0.21, 0.50]   0.40 [0.20, 0.60]   two statements, no question
================  ==================  ==================  ====================================

None is reliably better than a coin. ``score_first``, ``contradict``, ``same_field`` and
``same_abq`` were not finished in the time the shared machine allowed. The likelihood form
(:mod:`pytest_llmjudge.metrics.likelihood`: does the answer make the reference more likely?)
needs no reply; on all 60 dev questions, side by side with ``compact`` in one run, it scored
ROC AUC 0.69 [0.61, 0.78] and pairwise accuracy 0.80 [0.70, 0.90] against 0.50 [0.41, 0.60]
and 0.55 [0.42, 0.68], at 1.0 s per verdict against 2.5 s (load average 7-11 on 2 cores)::

    OMP_NUM_THREADS=1 python bench/judge_agreement.py bench/data/truthfulqa_dev.jsonl --limit 60 \\
        --concurrency 16 --judge local:smollm2-135m --metric correctness --metric correctness_variants:compact

so it is what ``correctness`` with a reference gets on a local judge. ``compact`` is the yes/no
form as shipped (what a ``local:`` judge that exposes no model gets, e.g. a fake one), for side-by-side runs;
``rubric`` is the 0-5 form every other judge gets.
"""
import dataclasses
from typing import Literal

from pydantic import BaseModel

from pytest_llmjudge.metrics import Metric, bounded_str
from pytest_llmjudge.metrics.builtin import CORRECTNESS, CORRECTNESS_COMPACT

#: the 0-5 rubric with a reason first, as every non-local judge gets it
rubric = dataclasses.replace(CORRECTNESS, compact=None, likelihood=None)
#: the yes/no form as shipped, P(yes) from the logits
compact = CORRECTNESS_COMPACT

SECTIONS = "QUESTION:\n{input}\n\nREFERENCE:\n{expected}\n\nANSWER:\n{output}\n\n"

class ScoreFirst05(BaseModel):
    score: Literal[0, 1, 2, 3, 4, 5]
    reason: bounded_str(160)

class Bin(BaseModel):
    score: Literal[0, 1]

class Bin3(BaseModel):
    score: Literal[1, 2, 3]

score_first = Metric(
    name="v_score_first", schema=ScoreFirst05, score=lambda v: v.score, scale=(0, 5),
    requires=("expected",), score_field="score",
    prompt=("Grade how correct the ANSWER is, compared with the REFERENCE answer, for the QUESTION.\n"
            "Scale: 0 = wrong or contradicts the reference, 5 = states the same facts as the reference.\n\n"
            + SECTIONS + 'Give the integer "score" first, then a short "reason".'))

yesno = Metric(
    name="v_yesno", schema=Bin, score=lambda v: v.score, scale=(0, 1), requires=("expected",),
    score_field="score",
    prompt=("Does the ANSWER state the same fact as the REFERENCE answer to the QUESTION?\n\n"
            + SECTIONS + 'Reply "score": 1 for yes (same fact), 0 for no (different or contradicting fact).'))

FEW = (
    "Examples:\n"
    "QUESTION: What is the capital of Australia? REFERENCE: Canberra is the capital. "
    "ANSWER: The capital of Australia is Canberra. -> score 1\n"
    "QUESTION: What is the capital of Australia? REFERENCE: Canberra is the capital. "
    "ANSWER: Sydney is the capital of Australia. -> score 0\n"
    "QUESTION: How many legs does a spider have? REFERENCE: Eight. "
    "ANSWER: Spiders have six legs. -> score 0\n"
    "QUESTION: How many legs does a spider have? REFERENCE: Eight. "
    "ANSWER: A spider has 8 legs. -> score 1\n\n"
)

yesno_few = Metric(
    name="v_yesno_few", schema=Bin, score=lambda v: v.score, scale=(0, 1), requires=("expected",),
    score_field="score",
    prompt=("Does the ANSWER state the same fact as the REFERENCE answer to the QUESTION? "
            "1 = yes, 0 = no.\n\n" + FEW + SECTIONS + 'Reply "score": 1 or 0.'))

agree3 = Metric(
    name="v_agree3", schema=Bin3, score=lambda v: v.score, scale=(1, 3), requires=("expected",),
    score_field="score",
    prompt=("Compare the ANSWER with the REFERENCE answer to the QUESTION.\n"
            "3 = the answer agrees with the reference, 2 = partly, 1 = the answer contradicts the reference.\n\n"
            + SECTIONS + 'Reply with the integer "score".'))

contradict = Metric(
    name="v_contradict", schema=Bin, score=lambda v: v.score, scale=(0, 1), requires=("expected",),
    score_field="score",
    prompt=("Does the ANSWER contradict the REFERENCE answer to the QUESTION?\n\n"
            + SECTIONS + 'Reply "score": 0 if it contradicts the reference, 1 if it does not.'))

same_ab = Metric(
    name="v_same_ab", schema=Bin, score=lambda v: v.score, scale=(0, 1), requires=("expected",),
    score_field="score",
    prompt=("Statement A:\n{expected}\n\nStatement B:\n{output}\n\n"
            'Do statements A and B say the same thing? Reply "score": 1 for yes, 0 for no.'))

same_abq = Metric(
    name="v_same_abq", schema=Bin, score=lambda v: v.score, scale=(0, 1), requires=("expected",),
    score_field="score",
    prompt=("Two answers to the question below.\n\nQuestion:\n{input}\n\n"
            "Answer A:\n{expected}\n\nAnswer B:\n{output}\n\n"
            'Do answers A and B agree? Reply "score": 1 for yes, 0 for no.'))

class Yes(BaseModel):
    same: Literal[0, 1]

same_field = Metric(
    name="v_same_field", schema=Yes, score=lambda v: v.same, scale=(0, 1), requires=("expected",),
    score_field="same",
    prompt=("REFERENCE:\n{expected}\n\nANSWER:\n{output}\n\n"
            'Is the ANSWER the same as the REFERENCE? "same": 1 means yes, 0 means no.'))
