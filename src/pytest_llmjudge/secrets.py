"""Keep credentials out of everything we print or store."""

from __future__ import annotations

import os
import re

SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LLMJUDGE_API_KEY")
# key-shaped strings servers like to echo back ("Incorrect API key provided: sk-abc...")
_KEY_SHAPES = re.compile(r"\b(?:sk|hf|pk|rk)[-_][A-Za-z0-9_\-*.]{6,}")


def redact(text: str) -> str:
    """Replace API keys (the environment's and key-shaped strings) with ``***``."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _KEY_SHAPES.sub("***", text)


def safe_url(url: str | None) -> str | None:
    """A URL without user info or query string (where tokens sometimes hide)."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
