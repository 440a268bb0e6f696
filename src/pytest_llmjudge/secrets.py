"""Keep credentials out of everything we print or store."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LLMJUDGE_API_KEY")
# key-shaped strings servers like to echo back ("Incorrect API key provided: sk-abc...")
_KEY_SHAPES = re.compile(r"\b(?:sk|hf|pk|rk)[-_][A-Za-z0-9_\-*.]{6,}")
# ``scheme://user:password@`` in any text: the userinfo goes
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#\"'<>]+@")
# ``?key=value&...`` query values in any URL-looking text: the values go, the names stay
_QUERY_VALUE = re.compile(r"([?&][A-Za-z0-9_.\-\[\]%]+=)[^&#\s\"'<>]+")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+|(?<![\w/])/[^\s\"'<>?]*\?[^\s\"'<>]+")


def redact(text: str) -> str:
    """Replace API keys (the environment's, key-shaped strings) and URL credentials with ``***``.

    URL credentials are the userinfo (``user:password@``) and every query value of a URL (or a
    request path with a query, as HTTP clients print them) found in ``text``.
    """
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _KEY_SHAPES.sub("***", text)
    if "://" in text or "?" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return text


def redact_url(url: str) -> str:
    """``url`` with its userinfo and query values replaced by ``***`` (the shape stays readable)."""
    url = _URL_USERINFO.sub(r"\1***@", url)
    return _QUERY_VALUE.sub(r"\1***", url)


def safe_url(url: str | None) -> str | None:
    """A URL without user info or query string (where tokens sometimes hide)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
