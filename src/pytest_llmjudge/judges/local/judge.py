"""``LocalJudge``: the judge protocol over a shared :class:`~.engine.Engine`, and ``make_local_judge``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ...errors import JudgeError
from ..base import DEFAULT_SAMPLING, JudgeRequest, JudgeResponse, Message, Sampling
from .constraint import SamplingKey
from .engine import Engine, Job
from .model import (
    SMOLLM2_ALIAS,
    SMOLLM2_GGUF,
    LocalOptions,
    ModelSource,
    default_cache_dir,
    resolve_model,
)

_loading = threading.Lock()  # one load per model even when several threads build judges at once


class LocalJudge:
    """A judge backed by a local transformers model with schema-constrained, batched decoding."""

    endpoint = "local"

    def __init__(self, name: str, engine: Engine, opts: LocalOptions) -> None:
        self.name = name
        self.engine = engine
        self.options = opts

    @property
    def load_s(self) -> float:
        """Seconds the model, tokenizer and enforcer tables took to load (conversion included)."""
        return self.engine.load_s

    def sampling_key(self, sampling: Sampling) -> SamplingKey:
        """The engine's sampling settings for ``sampling``; the judge's options fill what it leaves unset."""
        opts = self.options
        if sampling.temperature > 0:
            temperature, top_p = float(sampling.temperature), sampling.top_p
        else:
            temperature, top_p = opts.temperature, opts.top_p
        max_new = int(sampling.max_tokens) if sampling.max_tokens else opts.max_new_tokens
        if temperature <= 0:
            return SamplingKey(max_new_tokens=max_new)
        return SamplingKey(temperature=temperature, top_p=top_p, max_new_tokens=max_new, seed=sampling.seed)

    def _job(self, messages: Sequence[Message], schema: type[BaseModel] | None, sampling: Sampling,
             score_field: str | None = None, score_values: tuple[int, ...] = ()) -> Job:
        return Job(tuple(messages), schema, self.sampling_key(sampling), score_field, tuple(score_values),
                   self.options.batch_size, self.options.batch_window_s)

    def _request_job(self, request: JudgeRequest) -> Job:
        return self._job(request.messages, request.schema, request.sampling, request.score_field,
                         request.score_values)

    def _outcome(self, job: Job) -> JudgeResponse:
        result = job.result
        if isinstance(result, JudgeError):
            raise JudgeError(str(result), judge=self.name, metric=result.metric)
        assert result is not None
        return result

    def judge(self, request: JudgeRequest) -> JudgeResponse:
        """One verdict; batched with the requests other threads submit at the same time."""
        job = self._request_job(request)
        self.engine.submit([job])
        return self._outcome(job)

    def complete(self, messages: Sequence[Message], *, sampling: Sampling = DEFAULT_SAMPLING,
                 schema: type[BaseModel] | None = None) -> JudgeResponse:
        """A reply to ``messages``: free text when ``schema`` is None, else JSON constrained to it.

        Batched with whatever other threads submit at the same time, like verdicts.
        """
        job = self._job(messages, schema, sampling)
        self.engine.submit([job])
        response = self._outcome(job)
        if schema is None:
            response.text = response.text.strip()
        return response

    def judge_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeResponse | JudgeError]:
        """Verdicts for many requests, generated in batches of ``batch_size``; errors are returned."""
        jobs = [self._request_job(r) for r in requests]
        self.engine.submit(jobs)
        out: list[JudgeResponse | JudgeError] = []
        for job in jobs:
            result = job.result
            if isinstance(result, JudgeError) and not result.judge:
                result = JudgeError(str(result), judge=self.name, metric=result.metric)
            assert result is not None
            out.append(result)
        return out

    def __repr__(self) -> str:
        return f"LocalJudge({self.name!r}, device={self.engine.device!r})"


def make_local_judge(model: str, **options: Any) -> LocalJudge:
    """Build the judge for ``local:MODEL``; the loaded model is shared by judges on the same one."""
    opts = LocalOptions.from_options(options)
    source = resolve_model(model)
    # only what loading reads is part of the key: judges differing in sampling share one model
    load = LocalOptions(device=opts.device, dtype=opts.dtype, load_in_4bit=opts.load_in_4bit,
                        cache_dir=opts.cache_dir or default_cache_dir())
    with _loading:
        engine = loaded_engine(source, load)  # refuses 4-bit without CUDA
    alias = source.gguf_file == SMOLLM2_GGUF and model.strip().lower() == SMOLLM2_ALIAS
    return LocalJudge(f"local:{SMOLLM2_ALIAS}" if alias else f"local:{model}", engine, opts)


@functools.cache
def loaded_engine(source: ModelSource, load: LocalOptions) -> Engine:
    """The process's engine for ``source`` loaded with ``load``'s device, dtype and cache folder
    (a model is loaded once per process, whichever run asks)."""
    return Engine(source, load)
