"""The local judge: a transformers causal LM whose replies are constrained to the verdict schema.

One module per part: :mod:`.model` (specs, options, loading, GGUF conversion), :mod:`.constraint`
(lm-format-enforcer's public ``TokenEnforcer`` masking each row's next-token scores), :mod:`.kv`
(the key/value cache on transformers' public ``DynamicCache`` API), :mod:`.engine` (the batching
queue and the greedy decode loop over plain forward calls), :mod:`.scoring` (the score
distribution), :mod:`.judge` (``LocalJudge``).

torch, transformers and lm-format-enforcer are imported only when a local judge is built.
"""

from .judge import LocalJudge, make_local_judge
from .model import (
           LocalOptions,
           ModelSource,
           convert_gguf,
           default_cache_dir,
           resolve_model,
)

__all__ = ["LocalJudge", "LocalOptions", "ModelSource", "convert_gguf", "default_cache_dir",
           "make_local_judge", "resolve_model"]
