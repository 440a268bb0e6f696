"""The run-wide state of the plugin: judges, cache and results file."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

from ..errors import ConfigError, JudgeError
from ..judges import Judge, Sampling, default_judge_spec
from ..judges.retry import EndpointGate, EndpointGates
from ..judging.evaluation import evaluate
from ..judging.repeats import RepeatPlan, add_noise_samples, judge_repeated
from ..judging.verdict import Verdict
from ..metrics.base import AnyMetric, MetricInputs
from ..report.results_file import ResultsWriter
from .executor import DaemonExecutor
from .settings import Settings

T = TypeVar("T")


class LLMJudgeSession:
    """Built once per pytest process in ``pytest_configure``; owned by the run's plugin object
    (:class:`~pytest_llmjudge.run.run_plugin.LLMJudgeRun`)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.run_id = _run_id(config)
        self._judges: dict[str, Judge] = {}
        self._judges_lock = threading.Lock()
        self._judging: DaemonExecutor | None = None  # judge calls of async tests
        self.cache = _open_cache(settings)
        self.results = ResultsWriter.for_session(config, settings, self.run_id)
        self.stats_lock = threading.Lock()
        self.judge_calls = 0
        self.cache_hits = 0
        self._noise_used: dict[str, int] = {}
        #: per-endpoint in-flight limits and retry budgets of this run's judges
        self.gates = EndpointGates()

    @property
    def default_spec(self) -> str:
        return self.settings.judge or default_judge_spec(self.settings.base_url)

    def judge(self, spec: str | None = None) -> Judge:
        """The judge for ``spec`` (default: the configured one), built once per process."""
        spec = spec or self.default_spec
        with self._judges_lock:
            judge = self._judges.get(spec)
            if judge is None:
                judge = self.config.hook.pytest_llmjudge_make_judge(config=self.config, spec=spec)
                if judge is None:
                    raise ConfigError(f"no plugin could build judge {spec!r}")
                self._judges[spec] = judge
            return judge

    def adopt_judge(self, spec: str, judge: Judge) -> None:
        """Keep a judge built ahead of its first use (the session-start check) for ``spec``."""
        with self._judges_lock:
            self._judges.setdefault(spec, judge)

    def resolve_judge(self, judge: Judge | str | None) -> Judge:
        if judge is None or isinstance(judge, str):
            judge = self.judge(judge)
        gate = getattr(judge, "gate", None)
        if isinstance(gate, EndpointGate):  # a judge built outside the run: its notes are the run's too
            self.gates.adopt(gate)
        return judge

    @property
    def concurrent(self) -> bool:
        return self.settings.concurrency > 1

    def evaluate(
        self, metric: AnyMetric, inputs: MetricInputs, judge: Judge | None, threshold: float, nodeid: str,
        plan: RepeatPlan = RepeatPlan(), *, texts: dict[str, Any] | None = None,
    ) -> Verdict:
        """Grade one answer now (sampled as ``plan`` says) and append its row to the results file."""

        def sample(sampling: Sampling, index: int) -> Verdict:
            verdict = evaluate(
                metric, inputs, judge, threshold=threshold, sampling=sampling,
                sample_index=index, cache=self.cache,
            )
            with self.stats_lock:
                if verdict.cached:
                    self.cache_hits += 1
                elif metric.needs_judge:
                    self.judge_calls += 1
            return verdict

        try:
            if plan.repeated and metric.needs_judge:
                verdict = judge_repeated(sample, plan, threshold)
            else:
                verdict = sample(Sampling(), 0)
            if self._take_noise_slot(metric.name) and metric.needs_judge:
                add_noise_samples(verdict, sample, self.settings.repeat_temperature)
        except JudgeError as exc:  # any other exception is no verdict: the test fails with it
            self.results.write_error(nodeid, metric.name, judge.name if judge else "", exc, texts)
            raise
        self.results.write(nodeid, verdict, texts)
        return verdict

    def _take_noise_slot(self, metric: str) -> bool:
        """True for the first ``--llm-noise-floor`` verdicts of each metric in this process."""
        if not self.settings.noise_floor:
            return False
        with self.stats_lock:
            used = self._noise_used.get(metric, 0)
            if used >= self.settings.noise_floor:
                return False
            self._noise_used[metric] = used + 1
            return True

    def in_thread(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on one of ``--llm-concurrency`` judging threads (for ``async_`` calls)."""
        with self._judges_lock:
            if self._judging is None:
                self._judging = DaemonExecutor(self.settings.concurrency, name="llmjudge-judge")
        return self._judging.submit(fn)

    def close(self) -> None:
        if self._judging is not None:
            self._judging.shutdown()
        for judge in self._judges.values():
            close = getattr(judge, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self.results.close()
        if self.cache is not None:
            self.cache.close()


def _run_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "llmjudge_run_id" in workerinput:
        return str(workerinput["llmjudge_run_id"])
    return uuid.uuid4().hex[:12]


def _open_cache(settings: Settings) -> Any:
    if settings.cache_mode == "off":
        return None
    from ..judging.cache import VerdictCache

    return VerdictCache(settings.cache_dir, mode=settings.cache_mode)
