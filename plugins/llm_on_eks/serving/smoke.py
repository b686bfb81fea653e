"""Prove a fresh deployment answers before anyone is told it is ready.

Four checks, in order: ``/v1/models`` lists the served model (retried while the server warms
up, until a deadline), a chat completion returns content and a finish reason, a streamed one
measures time to first token, and when the model takes images a prompt with the configured
number of image parts is answered. A failure names the check, the HTTP status with the
server's own error message (never another body), and the time taken, so the task log alone
says what broke.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

from llm_on_eks.plan.types import ServingSection, SmokeTestSection
from llm_on_eks.serving.endpoint import Endpoint

log = logging.getLogger(__name__)

# Statuses a server (or the API server's proxy in front of it) gives while it is still coming
# up: no endpoints yet, connection refused behind the proxy, a gateway timeout.
WARMING_UP_STATUSES = frozenset({502, 503, 504})
POLL_INTERVAL_S = 2.0
REQUEST_TIMEOUT_S = 120.0
MAX_TOKENS = 16
BODY_EXCERPT_CHARS = 300
# Hugging Face user access tokens: "hf_" and letters and digits.
HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{8,}")
PROMPT = "Say hello in five words."
IMAGE_PROMPT = "Describe these images in one sentence."
# Small, but more than one patch of a vision tower, and each image a different colour.
IMAGE_SIZE = 64


class SmokeTestFailed(Exception):
    """One check failed; the message is the whole diagnosis."""

    def __init__(self, check: str, reason: str, *, elapsed_s: float, status: int | None = None,
                 body: str | None = None, retryable: bool | None = None) -> None:
        self.check, self.reason, self.elapsed_s, self.status = check, reason, elapsed_s, status
        # A server that answered with a 4xx or a wrong 200 will answer the same on a retry;
        # one that was unreachable, erred (5xx) or broke off might not.
        self.retryable = (status is None or status >= 500) if retryable is None else retryable
        message = f"smoke test check {check!r} failed after {elapsed_s:.1f} s: {reason}"
        if status is not None:
            message += f" (HTTP {status})"
        if body:
            message += f"; body: {error_excerpt(body)}"
        super().__init__(message)


@dataclass(frozen=True)
class SmokeSettings:
    model: str
    takes_images: bool
    images_per_prompt: int
    deadline_s: float

    @classmethod
    def from_sections(cls, serving: ServingSection, smoke_test: SmokeTestSection, deadline_s: float) -> SmokeSettings:
        return cls(model=serving["served_model_name"], takes_images=bool(serving["takes_images"]),
                   images_per_prompt=int(smoke_test["images_per_prompt"]), deadline_s=float(deadline_s))


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= BODY_EXCERPT_CHARS else text[:BODY_EXCERPT_CHARS] + "..."


def error_excerpt(body: str) -> str:
    """What a failure message may say of a response body: the server's own error message (an
    OpenAI-style ``{"error": {"message"}}``, or vLLM's and FastAPI's ``message``/``detail``), cut
    and with anything shaped like a Hugging Face token scrubbed; any other body only by its size.
    The smoke test answers to whatever endpoint_url names, whose pages must not reach the logs."""
    try:
        document = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes, not a JSON error"
    error = document.get("error") if isinstance(document, dict) else None
    message = (error.get("message") if isinstance(error, dict) else None) or (
        (document.get("message") or document.get("detail")) if isinstance(document, dict) else None)
    if not isinstance(message, str):
        return f"{len(body)} bytes of JSON without an error message"
    return excerpt(HF_TOKEN_SHAPE.sub("hf_***", message))


def run_checks(endpoint: Endpoint, settings: SmokeSettings) -> dict[str, Any]:
    """Run every check against ``endpoint``; raise SmokeTestFailed at the first that fails."""
    deadline = time.monotonic() + settings.deadline_s
    checks: dict[str, Any] = {}
    with endpoint.openai_client(timeout=REQUEST_TIMEOUT_S) as client:
        checks["models"] = _wait_for_model(client, settings, deadline)
        checks["chat"] = _check_chat(client, settings.model)
        checks["stream"] = _check_stream(client, settings.model)
        if settings.takes_images:
            checks["images"] = _check_images(client, settings.model, settings.images_per_prompt)
    for name, result in checks.items():
        log.info("smoke test %s passed in %.2f s: %s", name, result["elapsed_s"], result)
    return {"endpoint": endpoint.description, "model": settings.model, "ttft_ms": checks["stream"]["ttft_ms"],
            "checks": checks}


def _wait_for_model(client, settings: SmokeSettings, deadline: float) -> dict[str, Any]:
    """Poll /v1/models until it answers; only "not up yet" answers are retried."""
    import openai

    # Timed from when the deadline was set, so "failed after" and the deadline agree even when
    # building the client was slow (a loaded worker).
    start = deadline - settings.deadline_s
    attempts, last_problem = 0, "no attempt made"
    while True:
        attempts += 1
        try:
            raw = client.models.with_raw_response.list(
                timeout=max(1.0, min(REQUEST_TIMEOUT_S, deadline - time.monotonic())))
            break
        except openai.APIStatusError as exc:
            if exc.status_code not in WARMING_UP_STATUSES:
                raise SmokeTestFailed("models", "GET /v1/models was refused", elapsed_s=time.monotonic() - start,
                                      status=exc.status_code, body=exc.response.text) from None
            last_problem = f"HTTP {exc.status_code}: {error_excerpt(exc.response.text)}"
        except openai.APIConnectionError as exc:
            last_problem = f"{type(exc).__name__}: {exc.__cause__ or exc}"
        now = time.monotonic()
        if now >= deadline:
            raise SmokeTestFailed(
                "models", f"server not ready within the {settings.deadline_s:.0f} s deadline after {attempts} "
                f"attempt(s); last: {last_problem}", elapsed_s=now - start) from None
        log.info("server not ready yet (%s); retrying in %.0f s", last_problem, POLL_INTERVAL_S)
        time.sleep(min(POLL_INTERVAL_S, deadline - now))
    elapsed = time.monotonic() - start
    served = [model.id for model in raw.parse().data]
    if settings.model not in served:
        raise SmokeTestFailed("models", f"served model {settings.model!r} is not listed; the server lists {served}",
                              elapsed_s=elapsed, status=raw.status_code, body=raw.http_response.text)
    return {"elapsed_s": round(elapsed, 3), "attempts": attempts, "served": served}


def _check_chat(client, model: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": PROMPT}]
    return _complete(client, "chat", model, messages)


def _check_images(client, model: str, count: int) -> dict[str, Any]:
    result = _complete(client, "images", model, image_request(model, count)["messages"])
    return {**result, "images": count}


def image_request(model: str, count: int) -> dict[str, Any]:
    """The body the image check sends, for checking it against the server's request schema."""
    content: list[dict[str, Any]] = [{"type": "text", "text": IMAGE_PROMPT}]
    content += [{"type": "image_url", "image_url": {"url": png_data_url(IMAGE_SIZE, IMAGE_SIZE, index)}}
                for index in range(count)]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS,
            "temperature": 0}


def _complete(client, check: str, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    import openai

    start = time.monotonic()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    except openai.APIStatusError as exc:
        raise SmokeTestFailed(check, "POST /v1/chat/completions was refused", elapsed_s=time.monotonic() - start,
                              status=exc.status_code, body=exc.response.text) from None
    except openai.APIConnectionError as exc:
        raise SmokeTestFailed(check, f"POST /v1/chat/completions did not complete: {exc.__cause__ or exc}",
                              elapsed_s=time.monotonic() - start) from None
    elapsed = time.monotonic() - start
    completion = raw.parse()
    choice = completion.choices[0] if completion.choices else None
    content = choice.message.content if choice else None
    if not content or not content.strip() or not choice.finish_reason:
        raise SmokeTestFailed(check, "the completion has no content or no finish reason", elapsed_s=elapsed,
                              status=raw.status_code, body=raw.http_response.text)
    usage = completion.usage
    return {"elapsed_s": round(elapsed, 3), "finish_reason": choice.finish_reason,
            "completion_tokens": usage.completion_tokens if usage else None,
            "prompt_tokens": usage.prompt_tokens if usage else None, "content": excerpt(content)}


def _check_stream(client, model: str) -> dict[str, Any]:
    """A streamed completion: time to the first content chunk, and a stream that ends properly."""
    import openai

    start = time.monotonic()
    first_token_at, finish_reason, chunks, parts = None, None, 0, []
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS, temperature=0,
            stream=True, stream_options={"include_usage": True})
        with stream:
            for chunk in stream:
                chunks += 1
                for choice in chunk.choices:
                    if choice.delta.content:
                        first_token_at = first_token_at or time.monotonic()
                        parts.append(choice.delta.content)
                    finish_reason = choice.finish_reason or finish_reason
    except openai.APIStatusError as exc:
        raise SmokeTestFailed("stream", "POST /v1/chat/completions (stream) was refused",
                              elapsed_s=time.monotonic() - start, status=exc.status_code,
                              body=exc.response.text) from None
    except Exception as exc:  # noqa: BLE001 - any transport error mid-stream is this check's failure
        raise SmokeTestFailed("stream", f"the stream broke after {chunks} chunk(s): {type(exc).__name__}: "
                              f"{exc.__cause__ or exc}", elapsed_s=time.monotonic() - start,
                              body="".join(parts)) from None
    elapsed = time.monotonic() - start
    if first_token_at is None or finish_reason is None:
        missing = "any content" if first_token_at is None else "a finish reason"
        raise SmokeTestFailed("stream", f"the stream stopped mid-way: {chunks} chunk(s) without {missing}",
                              elapsed_s=elapsed, status=200, body="".join(parts), retryable=True)
    return {"elapsed_s": round(elapsed, 3), "ttft_ms": round((first_token_at - start) * 1000, 1),
            "chunks": chunks, "finish_reason": finish_reason, "content": excerpt("".join(parts))}


def png_data_url(width: int, height: int, seed: int) -> str:
    """A small RGB PNG as a data URL, made here so no test image has to be shipped or fetched."""

    red, green, blue = (seed * 97) % 256, (seed * 57 + 80) % 256, (seed * 23 + 160) % 256
    rows = b"".join(b"\x00" + b"".join(bytes((red, (green + x) % 256, (blue + y) % 256)) for x in range(width))
                    for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()
