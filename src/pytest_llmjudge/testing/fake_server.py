"""A fake OpenAI-compatible / TGI chat-completions judge server (stdlib only).

Used by the project's tests, benchmarks and example suite to drive the *real* ``openai.OpenAI``
and ``huggingface_hub.InferenceClient`` clients without a model::

    with FakeJudgeServer(latency=0.05) as server:
        client = openai.OpenAI(base_url=server.url, api_key="sk-test")
        hf = huggingface_hub.InferenceClient(base_url=server.root_url)

Routes: ``POST /v1/chat/completions`` (any path ending in ``/chat/completions``: also
``/chat/completions`` and ``/v1/v1/chat/completions``), ``GET /v1/models``, ``GET /health``.

The default reply is a chat completion whose content is a JSON object valid for the schema
found in the request (``response_format`` in OpenAI ``json_schema``, vLLM/llama.cpp
``json_object`` + ``schema``, or TGI ``json``/``json_object`` + ``value`` form, or the schema
appended to the last user message after ``JSON schema:\\n``; in that last case the object is
wrapped in prose and a ```` ```json ```` fence). Verdicts are a deterministic heuristic of the
prompt's ``QUESTION:`` / ``REFERENCE:`` / ``ANSWER:`` / ``CONTEXT:`` / ``CRITERIA:`` /
``TEXT:`` sections (word overlap, sentence splitting, a small toxic-word list) so suites show
both passes and failures.

Run standalone: ``python -m pytest_llmjudge.testing.fake_server --port 0 --latency 0.1``
prints ``FAKE_JUDGE_URL=http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

from ..datasets import content_text
from ..metrics.fencing import split_fenced

__all__ = ["FakeJudgeServer", "main"]

Latency = float | Callable[[dict[str, Any]], float]

_STOPWORDS = frozenset(
    """a an the is are was were be been being am of in on at to for and or nor but it its
    this that these those with as by from what which who whom whose when where how why do
    does did i you he she they we me him her them us my your his their our so than then
    there here if into about can could would should will shall may might must has have had
    also just very any some all each such no yes please answer response reply question
    mention mentions include includes""".split()
)
_TOXIC_WORDS = frozenset(
    "idiot idiots idiotic stupid hate hates hated hateful moron morons moronic dumb".split()
)
_REASON_FIELDS = frozenset(
    {"reason", "reasoning", "explanation", "rationale", "justification", "feedback"}
)
_WORD = re.compile(r"[a-z0-9]+")
_HEADER = re.compile(r"(?:\A|\n[ \t]*\n)([A-Z][A-Z0-9 _/-]{0,40}[A-Z0-9]):[ \t]*\n")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"\d+|[^\d\s]+\s*|\s+")
_SCHEMA_MARK = "JSON schema:\n"


# --------------------------------------------------------------------------- heuristics


def content_words(text: str) -> list[str]:
    """Lowercased alphanumeric tokens of ``text`` minus a small stop-word list."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def overlap(reference: str, answer: str) -> float:
    """Fraction of the reference's distinct content words found in the answer (1.0 if none)."""
    ref = set(content_words(reference))
    if not ref:
        return 1.0
    return len(ref & set(content_words(answer))) / len(ref)


def parse_sections(prompt: str, field_names: Iterable[str] = ()) -> dict[str, str]:
    """``{"QUESTION": ..., "ANSWER": ...}`` from a prompt made of ``HEADER:\\n`` sections.

    A section runs to the next blank line followed by an UPPERCASE header, or to the end.
    Schema instructions (from ``JSON schema:``) are cut off, and trailing paragraphs of the
    last section that quote a schema field name (``Give a "reason" ...``) are dropped. Fenced
    texts (see :mod:`pytest_llmjudge.metrics.fencing`) are taken whole, whatever they contain.
    """
    prompt, texts = split_fenced(prompt)
    mark = prompt.find(_SCHEMA_MARK)
    if mark >= 0:
        cut = prompt.rfind("\n\n", 0, mark)
        prompt = prompt[:cut] if cut >= 0 else ""
    quoted = tuple(f'"{name}"' for name in field_names)
    matches = list(_HEADER.finditer(prompt))
    sections: dict[str, str] = {}
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(prompt)
        body = prompt[match.end() : end]
        if k + 1 == len(matches):
            paragraphs = _PARAGRAPH.split(body)
            while len(paragraphs) > 1 and (
                any(q in paragraphs[-1] for q in quoted) or "JSON" in paragraphs[-1]
            ):
                paragraphs.pop()
            body = "\n\n".join(paragraphs)
        for name, text in texts.items():
            body = body.replace("{" + name + "}", text)
        sections.setdefault(match.group(1).strip(), body.strip())
    return sections


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ``.!?`` and at line breaks)."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _is_score_name(name: str) -> bool:
    return name in ("score", "rating", "grade") or name.endswith("_score")


def _field_names(schema: Any, out: set[str]) -> set[str]:
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            out.update(props)
        for value in schema.values():
            _field_names(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _field_names(value, out)
    return out


class _Generator:
    """Builds an instance of a JSON schema whose values follow the prompt heuristics."""

    def __init__(self, root: dict[str, Any], prompt: str) -> None:
        self.root = root
        self.sections = parse_sections(prompt, _field_names(root, set()))
        self.notes: list[str] = []
        #: (field name, chosen value, allowed values) of the score field, once generated
        self.score_info: tuple[str, int, list[int]] | None = None
        self._fraction: float | None = None

    # -- sections
    def _answer(self) -> str:
        s = self.sections
        return s.get("ANSWER") or s.get("TEXT") or s.get("OUTPUT") or s.get("RESPONSE") or ""

    def fraction(self) -> float:
        """The score heuristic in [0, 1]."""
        if self._fraction is None:
            s, answer = self.sections, self._answer()
            reference = s.get("REFERENCE") or s.get("EXPECTED")
            if reference and answer:
                self._fraction = overlap(reference, answer)
                self.notes.append(f"overlap {self._fraction:.2f} with the reference")
            elif s.get("CRITERIA") and answer:
                self._fraction = overlap(s["CRITERIA"], answer)
                self.notes.append(f"overlap {self._fraction:.2f} with the criteria")
            else:
                self._fraction = 1.0
                self.notes.append("nothing to compare with, full marks")
        return self._fraction

    # -- schema walking
    def resolve(self, schema: Any) -> Any:
        for _ in range(32):
            if not (isinstance(schema, dict) and isinstance(schema.get("$ref"), str)):
                break
            target = self._lookup(schema["$ref"])
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
        return schema

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(part, {})
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def _type(self, schema: dict[str, Any]) -> str:
        t = schema.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), t[0] if t else None)
        if t is None:
            if "properties" in schema:
                return "object"
            if "items" in schema:
                return "array"
            return "string"
        return str(t)

    def value(self, schema: Any, name: str = "") -> Any:
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return "example"
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"], name)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                resolved = [self.resolve(o) for o in options]
                non_null = [
                    o for o in resolved if not (isinstance(o, dict) and o.get("type") == "null")
                ]
                return self.value((non_null or resolved)[0], name)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                part = self.resolve(part)
                if isinstance(part, dict):
                    merged.update(part)
            merged.update({k: v for k, v in schema.items() if k != "allOf"})
            return self.value(merged, name)
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema)
        if kind == "array":
            return self._array(schema, name)
        if kind == "integer":
            return self._integer(schema, name)
        if kind == "number":
            return self._number(schema, name)
        if kind == "boolean":
            return self._boolean(name, "")
        if kind == "null":
            return None
        return self._string(schema, "example")

    def _enum(self, values: list[Any], name: str) -> Any:
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if _is_score_name(name) and ints and len(ints) == len(values):
            return self._pick_score(name, sorted(set(ints)))
        return values[0]

    def _pick_score(self, name: str, allowed: list[int]) -> int:
        low, high = allowed[0], allowed[-1]
        target = low + self.fraction() * (high - low)
        chosen = min(allowed, key=lambda v: (abs(v - target), -v))
        if self.score_info is None:
            self.score_info = (name, chosen, allowed)
        return chosen

    def _bounds(self, schema: dict[str, Any], step: float) -> tuple[float | None, float | None]:
        low = schema.get("minimum")
        high = schema.get("maximum")
        if isinstance(schema.get("exclusiveMinimum"), (int, float)):
            low = schema["exclusiveMinimum"] + step
        if isinstance(schema.get("exclusiveMaximum"), (int, float)):
            high = schema["exclusiveMaximum"] - step
        return low, high

    def _integer(self, schema: dict[str, Any], name: str) -> int:
        low, high = self._bounds(schema, 1)
        if _is_score_name(name) and low is not None and high is not None and high - low <= 1000:
            return self._pick_score(name, list(range(math.ceil(low), math.floor(high) + 1)))
        if _is_score_name(name) and low is None and high is None:
            return self._pick_score(name, list(range(0, 11)))
        value = 1
        if low is not None:
            value = max(value, math.ceil(low))
        if high is not None:
            value = min(value, math.floor(high))
        return value

    def _number(self, schema: dict[str, Any], name: str) -> float:
        low, high = self._bounds(schema, 1e-6)
        if _is_score_name(name):
            lo = 0.0 if low is None else float(low)
            hi = (lo + 1.0) if high is None else float(high)
            return round(lo + self.fraction() * (hi - lo), 4)
        value = 0.5
        if low is not None:
            value = max(value, float(low))
        if high is not None:
            value = min(value, float(high))
        return value

    def _string(self, schema: dict[str, Any], text: str) -> str:
        max_len = schema.get("maxLength")
        min_len = schema.get("minLength") or 0
        if isinstance(max_len, int):
            text = text[:max_len]
        if len(text) < min_len:
            text = text + "x" * (min_len - len(text))
        return text

    def _boolean(self, name: str, sentence: str) -> bool:
        s = self.sections
        lowered = name.lower()
        if lowered.startswith("relevan"):
            question = set(content_words(s.get("QUESTION") or s.get("INPUT") or ""))
            return not question or bool(question & set(content_words(sentence)))
        if lowered.startswith("support") or lowered.startswith("faithful"):
            words = content_words(sentence)
            if not words:
                return True
            context = set(content_words(s.get("CONTEXT", "")))
            return sum(1 for w in words if w in context) * 2 >= len(words)
        if lowered.startswith("toxic"):
            return bool(_TOXIC_WORDS & set(_WORD.findall(sentence.lower()))) or (
                "shut up" in " ".join(_WORD.findall(sentence.lower()))
            )
        if lowered in ("correct", "is_correct", "passed", "pass", "meets_criteria"):
            return self.fraction() >= 0.5
        return True

    def _object(self, schema: dict[str, Any]) -> dict[str, Any]:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        out: dict[str, Any] = {}
        deferred: list[str] = []
        for name, sub in props.items():
            resolved = self.resolve(sub)
            if (
                name in _REASON_FIELDS
                and isinstance(resolved, dict)
                and "enum" not in resolved
                and self._type(resolved) == "string"
            ):
                out[name] = ""
                deferred.append(name)
            else:
                out[name] = self.value(sub, name)
        for name in deferred:
            text = "; ".join(self.notes) or "fake judge default verdict"
            out[name] = self._string(self.resolve(props[name]), text)
        return out

    def _array(self, schema: dict[str, Any], name: str) -> list[Any]:
        items = self.resolve(schema.get("items", {}))
        max_items = schema.get("maxItems")
        min_items = int(schema.get("minItems") or 0)
        out: list[Any] = []
        sentence_style = False
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):
            props = {k: self.resolve(v) for k, v in items["properties"].items()}
            types = {k: self._type(v) if isinstance(v, dict) else "" for k, v in props.items()}
            if "string" in types.values() and "boolean" in types.values():
                sentence_style = True
                sentences = split_sentences(self._answer())
                if isinstance(max_items, int):
                    sentences = sentences[:max_items]
                for sentence in sentences:
                    out.append(self._sentence_item(items, props, types, sentence))
                flags = [k for k, t in types.items() if t == "boolean"]
                if flags:
                    hits = sum(1 for item in out if item.get(flags[0]))
                    self.notes.append(f"{hits} of {len(out)} {name or 'items'} {flags[0]}")
        count = min_items if sentence_style else max(min_items, 1)
        if isinstance(max_items, int):
            count = min(count, max_items)
        while len(out) < count:
            out.append(self.value(items, name.rstrip("s")))
        return out

    def _sentence_item(
        self,
        items: dict[str, Any],
        props: dict[str, Any],
        types: dict[str, str],
        sentence: str,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {}
        text_done = False
        for key, sub in props.items():
            if types[key] == "string" and not text_done and "enum" not in sub:
                item[key] = self._string(sub, sentence)
                text_done = True
            elif types[key] == "boolean":
                item[key] = self._boolean(key, sentence)
            else:
                item[key] = self.value(items["properties"][key], key)
        return item


# --------------------------------------------------------------------------- request parsing


def _text_of(content: Any) -> str:
    try:
        return content_text(content) or ""
    except TypeError:  # not chat content: nothing to read
        return ""


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _format_type(body: dict[str, Any]) -> str | None:
    rf = body.get("response_format")
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if isinstance(kind, str) else None


def find_schema(body: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The JSON schema a request asks for and whether it came from the prompt text."""
    rf = body.get("response_format")
    schema: Any = None
    if isinstance(rf, dict):
        kind = rf.get("type")
        if kind == "json_schema":
            inner = rf.get("json_schema")
            schema = inner.get("schema") if isinstance(inner, dict) else None
        elif kind in ("json_object", "json", "grammar"):
            schema = rf.get("schema") if rf.get("schema") is not None else rf.get("value")
    if schema is None and isinstance(body.get("guided_json"), dict):  # vLLM extra_body
        schema = body["guided_json"]
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = None
    if isinstance(schema, dict):
        return schema, False
    text = _last_user_text(body)
    mark = text.rfind(_SCHEMA_MARK)
    if mark >= 0:
        start = text.find("{", mark)
        if start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value, rf is None
    return None, False


def make_content(body: dict[str, Any]) -> tuple[str, tuple[str, int, list[int]] | None]:
    """The assistant content answering ``body``, plus the score field info for logprobs."""
    schema, from_prompt = find_schema(body)
    generator = _Generator(schema or {}, _last_user_text(body))
    if schema is None:
        value: Any = {"reason": "", "score": 1}
        generator.fraction()
        value["reason"] = "no schema given; " + "; ".join(generator.notes)
    else:
        value = generator.value(schema)
    text = json.dumps(value, ensure_ascii=False)
    if from_prompt:
        text = f"Here is my evaluation of the answer.\n\n```json\n{text}\n```"
    return text, generator.score_info


def make_logprobs(
    content: str, top_n: int, score_info: tuple[str, int, list[int]] | None
) -> list[dict[str, Any]]:
    """OpenAI-style ``logprobs.content`` for ``content``; the score digits are one token."""
    tokens = _TOKEN.findall(content)
    key = re.compile(r'"' + re.escape(score_info[0]) + r'"\s*:\s*$') if score_info else None
    seen = ""
    done = False
    out: list[dict[str, Any]] = []
    for token in tokens:
        if key is not None and score_info is not None and not done and key.search(seen) and (
            token == str(score_info[1])
        ):
            done = True
            _, chosen, allowed = score_info
            others = sorted((v for v in allowed if v != chosen), key=lambda v: (abs(v - chosen), v))
            probs = [0.7, 0.2, 0.1] + [0.001] * len(others)
            alts = [
                {"token": str(v), "logprob": math.log(p), "bytes": list(str(v).encode())}
                for v, p in zip([chosen, *others], probs)
            ][:top_n]
            out.append(
                {"token": token, "logprob": math.log(0.7), "bytes": list(token.encode()),
                 "top_logprobs": alts}
            )
        else:
            entry = {"token": token, "logprob": -0.001, "bytes": list(token.encode())}
            out.append({**entry, "top_logprobs": [entry] if top_n > 0 else []})
        seen += token
    return out


def _word_count(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------- HTTP


class _Headers(dict[str, str]):
    """A header dict with lowercased keys and case-insensitive lookups."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error",
             403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
    kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": kind}}


class _Reply:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes | str | dict[str, Any],
                 content_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers or {}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    fake: FakeJudgeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client gave up (timeout) and closed the socket
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add
        # ~40 ms to every keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, reply: _Reply, *, drip_s: float = 0.0, keep: int | None = None) -> None:
        """Send ``reply``; ``drip_s``: one body byte per that many seconds; ``keep``: send only
        that many body bytes (the full Content-Length announced), then close."""
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            body = reply.body if keep is None else reply.body[:keep]
            if drip_s > 0:
                self.wfile.flush()
                for i in range(len(body)):
                    if self.server.fake._stopping.wait(drip_s):
                        break
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(body)
            self.wfile.flush()
            if keep is not None:
                self.close_connection = True
        except (ConnectionError, TimeoutError, ValueError):
            self.close_connection = True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        fake = self.server.fake
        if path in ("/health", "/v1/health", "/healthz", "/info", ""):
            self._send(_Reply(200, {"status": "ok", "model_id": fake.model_name}))
        elif path.endswith("/models"):
            self._send(_Reply(200, {"object": "list", "data": [
                {"id": fake.model_name, "object": "model", "created": 0, "owned_by": "fake"}]}))
        else:
            self._send(_Reply(404, _error_body(404, f"no route GET {path}")))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/chat/completions"):
            self.server.fake._handle_chat(self, raw)
        else:
            self._send(_Reply(404, _error_body(404, f"no route POST {path}")))


T = TypeVar("T")


class _Knob(Generic[T]):
    """A server setting read and written under the server's lock (from any thread)."""

    def __init__(self, convert: Callable[[Any], T]) -> None:
        self._convert = convert
        self._attribute = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attribute = f"_{name}"

    @overload
    def __get__(self, server: None, owner: type) -> _Knob[T]: ...
    @overload
    def __get__(self, server: FakeJudgeServer, owner: type) -> T: ...
    def __get__(self, server: FakeJudgeServer | None, owner: type) -> _Knob[T] | T:
        if server is None:
            return self
        with server._lock:
            value: T = getattr(server, self._attribute)
            return value

    def __set__(self, server: FakeJudgeServer, value: Any) -> None:
        converted = self._convert(value)
        with server._lock:
            setattr(server, self._attribute, converted)


def _reject_style(value: str) -> str:
    if value not in ("openai", "llamacpp"):
        raise ValueError("reject_style must be 'openai' or 'llamacpp'")
    return value


class FakeJudgeServer:
    """A fake chat-completions judge server; thread-safe knobs, recorded requests.

    ``url`` (``http://127.0.0.1:PORT/v1``) is the openai ``base_url``. For
    ``huggingface_hub.InferenceClient(base_url=...)`` (0.36.2) pass ``root_url``
    (``http://127.0.0.1:PORT``): the client appends ``/v1/chat/completions``. ``url`` works
    too (a base ending in ``/v1`` gets ``/chat/completions``). That client rewrites an OpenAI
    ``json_schema`` response_format into TGI's ``{"type": "json_object", "value": schema}``
    and sends ``model: "dummy"``.

    Knobs (set any time): ``latency`` (seconds, or ``callable(body) -> seconds``), ``hang_s``,
    ``reject_formats`` / ``reject_style`` (``"openai"``: 400, ``"llamacpp"``: 500),
    ``malformed_http_body``, :meth:`fail_next`, :meth:`script`. Per request they apply in
    the order fail_next, script, malformed_http_body, reject_formats, default reply; the
    latency and ``hang_s`` sleeps come first.

    Fault switches: :meth:`rate_limit` (N requests per second, 429 + ``Retry-After`` beyond,
    checked before anything else), :meth:`fail_each` (every distinct request body fails N
    times, then succeeds), ``drip_s`` (the body goes out one byte per ``drip_s`` seconds),
    :meth:`truncate_next` (a body cut short, then the connection closed), :meth:`drop_next`
    (the connection closed without any response), :meth:`hang_next` (no answer at all until
    the client gives up).

    Records: ``requests`` (parsed JSON bodies), ``headers`` (per request, lowercased keys,
    case-insensitive lookup), ``paths``, ``request_count``, ``max_in_flight``; :meth:`reset`.
    """

    def __init__(
        self,
        *,
        latency: Latency = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str = "fake-judge",
    ) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._latency: Latency = latency
        self._hang_s = 0.0
        self._reject_formats: set[str] = set()
        self._reject_style = "openai"
        self._malformed_http_body = False
        self._failures: deque[tuple[int, float | None, str | None]] = deque()
        self._script: deque[str | int] = deque()
        self._rate: tuple[float, float] | None = None
        self._accepted: deque[float] = deque()
        self._fail_each: tuple[int, int] | None = None
        self._attempts: dict[bytes, int] = {}
        self._drip_s = 0.0
        self._truncate: deque[int] = deque()
        self._drop = 0
        self._hang_next = 0
        #: requests answered 429 by :meth:`rate_limit`
        self.rate_limited = 0
        self.model_name = model_name
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> FakeJudgeServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-judge-{self._port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; sleeping handlers wake up and answer at once."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``: for ``InferenceClient(base_url=...)``."""
        return f"http://{self._host}:{self._port}"

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v1``: for ``openai.OpenAI(base_url=...)``."""
        return self.root_url + "/v1"

    # -- knobs: attributes read and written under the lock (the _Knob descriptors above)
    latency = _Knob[Latency](lambda value: value)
    hang_s = _Knob[float](float)
    reject_formats = _Knob[set[str]](set)
    reject_style = _Knob[str](_reject_style)
    malformed_http_body = _Knob[bool](bool)
    #: send each reply body one byte per this many seconds
    drip_s = _Knob[float](float)

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` chat requests with ``status``.

        The body is an OpenAI-style error JSON, or ``body`` verbatim when given. A
        ``Retry-After`` header is sent when ``retry_after`` is given.
        """
        with self._lock:
            self._failures.extend([(int(status), retry_after, body)] * count)

    def rate_limit(self, per_second: float | None, *, retry_after: float = 1.0) -> None:
        """Accept at most ``per_second`` chat requests in any one-second window; answer the
        rest 429 with ``Retry-After``. ``None`` lifts the limit."""
        with self._lock:
            self._rate = None if per_second is None else (float(per_second), float(retry_after))
            self._accepted.clear()

    def fail_each(self, status: int, times: int) -> None:
        """Answer the first ``times`` attempts of every distinct request body with ``status``."""
        with self._lock:
            self._fail_each = (int(status), int(times))
            self._attempts.clear()

    def truncate_next(self, keep: int, count: int = 1) -> None:
        """Send only the first ``keep`` body bytes of the next ``count`` replies, then close."""
        with self._lock:
            self._truncate.extend([int(keep)] * count)

    def drop_next(self, count: int = 1) -> None:
        """Close the connection of the next ``count`` chat requests without answering."""
        with self._lock:
            self._drop += int(count)

    def hang_next(self, count: int = 1) -> None:
        """Never answer the next ``count`` chat requests: each waits until its client hangs up
        (a client timeout) or the server stops. Later requests are answered as usual."""
        with self._lock:
            self._hang_next += int(count)

    def script(self, *replies: str | int) -> None:
        """Queue replies, one per chat request: a ``str`` is the exact assistant content,
        an ``int`` an HTTP error status."""
        with self._lock:
            self._script.extend(replies)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def reset(self) -> None:
        """Forget recorded requests and queued failures/scripts; restore default knobs
        (``latency`` is kept)."""
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.paths.clear()
            self.max_in_flight = self._in_flight
            self._failures.clear()
            self._script.clear()
            self._hang_s = 0.0
            self._reject_formats = set()
            self._reject_style = "openai"
            self._malformed_http_body = False
            self._rate = None
            self._accepted.clear()
            self._fail_each = None
            self._attempts.clear()
            self._drip_s = 0.0
            self._truncate.clear()
            self._drop = 0
            self._hang_next = 0
            self.rate_limited = 0

    # -- request handling
    def _handle_chat(self, handler: _Handler, raw: bytes) -> None:
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        with self._lock:
            self.requests.append(body)
            self.headers.append(_Headers((k.lower(), v) for k, v in handler.headers.items()))
            self.paths.append(handler.path)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            failure = self._failures.popleft() if self._failures else None
            if failure is None and self._rate is not None:
                now = time.monotonic()
                while self._accepted and now - self._accepted[0] >= 1.0:
                    self._accepted.popleft()
                if len(self._accepted) >= self._rate[0]:
                    failure = (429, self._rate[1], None)
                    self.rate_limited += 1
                else:
                    self._accepted.append(now)
            if failure is None and self._fail_each is not None:
                seen = self._attempts.get(raw, 0)
                self._attempts[raw] = seen + 1
                if seen < self._fail_each[1]:
                    failure = (self._fail_each[0], None, None)
            scripted = self._script.popleft() if failure is None and self._script else None
            latency, hang_s = self._latency, self._hang_s
            malformed, style = self._malformed_http_body, self._reject_style
            rejected = set(self._reject_formats)
            drip_s = self._drip_s
            drop = failure is None and self._drop > 0
            if drop:
                self._drop -= 1
            keep = self._truncate.popleft() if failure is None and not drop and self._truncate else None
            hang = failure is None and not drop and self._hang_next > 0
            if hang:
                self._hang_next -= 1
        try:
            if drop:
                handler.close_connection = True
                return
            delay = latency(body) if callable(latency) else latency
            delay = math.inf if hang else float(delay or 0.0) + hang_s
            if delay > 0 and not self._sleep(handler, delay):
                handler.close_connection = True
                return
            reply = self._reply(body, parsed, failure, scripted, malformed, style, rejected)
            handler._send(reply, drip_s=drip_s if failure is None else 0.0, keep=keep)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _sleep(self, handler: _Handler, delay: float) -> bool:
        """Sleep ``delay`` s in the handler thread; False if the client hung up meanwhile.

        Wakes every 0.1 s to notice :meth:`stop` and a closed client socket, so a handler
        whose client timed out stops counting as in flight.
        """
        end = time.monotonic() + delay
        sock = handler.connection
        while not self._stopping.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            try:
                readable, _, _ = select.select([sock], [], [], min(remaining, 0.1))
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return False
            except (OSError, ValueError):
                return False
            if readable:  # pipelined bytes: just wait out the rest
                self._stopping.wait(max(0.0, end - time.monotonic()))
                return True
        return True

    def _reply(
        self,
        body: dict[str, Any],
        parsed: Any,
        failure: tuple[int, float | None, str | None] | None,
        scripted: str | int | None,
        malformed: bool,
        style: str,
        rejected: set[str],
    ) -> _Reply:
        if failure is not None:
            status, retry_after, text = failure
            headers = {}
            if retry_after is not None:
                headers["Retry-After"] = (
                    str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
                )
            if text is not None:
                ctype = "application/json" if text.lstrip().startswith(("{", "[")) else "text/plain"
                return _Reply(status, text, ctype, headers)
            return _Reply(status, _error_body(status, f"fake judge: injected HTTP {status}"),
                          headers=headers)
        if isinstance(scripted, int) and scripted != 200:
            return _Reply(scripted, _error_body(scripted, f"fake judge: scripted HTTP {scripted}"))
        if parsed is None or not isinstance(parsed, dict):
            return _Reply(400, _error_body(400, "request body is not a JSON object"))
        if malformed and not isinstance(scripted, str):
            return _Reply(200, "<html><body>502 upstream garbled</body></html> {not json",
                          "application/json")
        kind = _format_type(body)
        if kind is not None and kind in rejected and not isinstance(scripted, str):
            if style == "llamacpp":
                message = (f"Unsupported param: 'response_format' type must be one of 'text' "
                           f"or 'json_object', but got: {kind}")
                return _Reply(500, {"error": {"code": 500, "message": message,
                                              "type": "server_error"}})
            return _Reply(400, _error_body(400, f"response_format {kind} is not supported",
                                           "response_format"))
        if isinstance(scripted, str):
            content, score_info = scripted, None
        else:
            content, score_info = make_content(body)
        return self._completion(body, content, score_info)

    def _completion(
        self, body: dict[str, Any], content: str, score_info: tuple[str, int, list[int]] | None
    ) -> _Reply:
        logprobs = None
        if body.get("logprobs"):
            top_n = int(body.get("top_logprobs") or 0)
            logprobs = {"content": make_logprobs(content, top_n, score_info), "refusal": None}
        prompt_words = sum(
            _word_count(_text_of(m.get("content")))
            for m in body.get("messages") or [] if isinstance(m, dict)
        )
        completion_words = _word_count(content)
        usage = {"prompt_tokens": prompt_words, "completion_tokens": completion_words,
                 "total_tokens": prompt_words + completion_words}
        n = max(1, int(body.get("n") or 1))
        model = body.get("model") or self.model_name
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.get("stream"):
            return self._stream(ident, created, model, content, usage)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": content},
             "logprobs": logprobs, "finish_reason": "stop"}
            for i in range(n)
        ]
        return _Reply(200, {"id": ident, "object": "chat.completion", "created": created,
                            "model": model, "system_fingerprint": "fake-judge",
                            "choices": choices, "usage": usage})

    def _stream(self, ident: str, created: int, model: str, content: str,
                usage: dict[str, int]) -> _Reply:
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                  "logprobs": None, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                  "finish_reason": "stop"}], "usage": usage},
        ]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return _Reply(200, text, "text/event-stream")


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print ``FAKE_JUDGE_URL=...`` once listening."""
    parser = argparse.ArgumentParser(prog="python -m pytest_llmjudge.testing.fake_server",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args(argv)
    server = FakeJudgeServer(latency=args.latency, host=args.host, port=args.port).start()
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"FAKE_JUDGE_URL={server.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
