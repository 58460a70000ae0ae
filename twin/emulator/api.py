"""The OpenAI-compatible API as vLLM's server answers it, on top of one engine driver.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (SSE streaming
or whole responses, ``stream_options.include_usage``), ``GET /health``, ``GET /version``,
``GET /metrics`` and the legacy ``POST /generate``. Errors are vLLM's error objects
(``{"error": {"message", "type", "param", "code"}}``, code = HTTP status); a missing or wrong API
key gets OpenAI's 401 (``invalid_api_key``). Of the routes served here, ``/v1/*`` and the legacy
``/generate`` (which spends GPU time too) need the key; health, version and metrics do not. vLLM
itself guards only ``/v1``, ``/v2``, ``/inference`` and ``/cohere``
(``domain.vllm_args.API_KEY_GUARDED_PREFIXES``); its unguarded inference routes are not emulated.

What the emulated model writes: filler text (Chinese when the prompt is mostly Chinese), one token
per piece, so ``usage`` counts are exact. Its answer ends, as a model's would, at an EOS after a
natural length (128..1024 tokens, fixed per request) unless ``max_tokens`` comes first
(``finish_reason`` ``length``) or ``ignore_eos`` is set (then exactly ``max_tokens``). Sampling
parameters and ``stop`` are accepted and validated but do not change the text.
"""

from __future__ import annotations

import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.versions import VLLM_VERSION
from twin.emulator.driver import EngineDriver
from twin.emulator.engine import FinishReason, Sequence, SequenceSink
from twin.emulator.filler import Filler, filler
from twin.emulator.http_protocol import HttpConnection, HttpRequest, error_body
from twin.emulator.tokens import TokenCounter, cjk_share, render_chat

EMULATED_VLLM_VERSION = VLLM_VERSION.removeprefix("v")
"""The release the cluster deploys (``domain.versions``), as vLLM's ``/version`` spells it: the
emulator follows that release's API, metric names and scheduler defaults."""
NATURAL_LENGTH_RANGE = (128, 1024)
_GOLDEN = 0.6180339887498949


class ApiError(Exception):
    """An error answered as vLLM's error object."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> bytes:
        """The JSON error object."""
        kind = {
            400: "BadRequestError",
            404: "NotFoundError",
            405: "MethodNotAllowedError",
            503: "ServiceUnavailableError",
        }
        return error_body(
            self.status, self.message, kind.get(self.status, "InternalServerError"), self.param
        )


_UNAUTHORIZED = json.dumps(
    {
        "error": {
            "message": "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
).encode()


class _Options(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = False


class _Sampling(BaseModel):
    # vLLM ignores unknown fields (it logs them), so extra keys are allowed here too.
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: str | list[str] | None = None
    ignore_eos: bool = False
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stream: bool = False
    stream_options: _Options | None = None


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[_TextPart] | None = None


class _ChatRequest(_Sampling):
    messages: list[_Message] = Field(min_length=1)


class _CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]


class _GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str
    max_tokens: int = Field(default=16, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    stream: bool = False
    ignore_eos: bool = False


_Req = TypeVar("_Req", bound=BaseModel)


def _check_surrogates(data: object) -> None:
    r"""Refuse ``\ud800``-style escapes that pair with nothing: they are not text.

    A pair (an emoji) decodes to one character; a lone half cannot be encoded again, and
    ``/generate`` echoes its prompt.
    """
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, "the JSON body holds an unpaired UTF-16 surrogate escape; send valid Unicode text"
        ) from None


def _filler_for(text: str) -> Filler:
    """The Chinese filler when over a fifth of the visible characters of ``text`` are CJK."""
    return filler(cjk_share(text) > 0.2)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return f"{param}: {first['msg']}" if param else first["msg"], param


@dataclass(frozen=True)
class ApiSettings:
    """What the API needs to know about the replica it fronts."""

    served_model: str
    max_model_len: int
    api_key: str | None
    counter: TokenCounter


class OpenAIApi:
    """Routes requests to the engine driver and writes vLLM-shaped answers."""

    def __init__(
        self,
        settings: ApiSettings,
        driver: EngineDriver,
        exposition: Callable[[], bytes],
        accepting: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self._driver = driver
        self._exposition = exposition
        self._accepting = accepting
        self._model_json = json.dumps(settings.served_model)
        self._counter = itertools.count()
        self._created = int(time.time())

    def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        """Answer one request (RequestHandler)."""
        try:
            self._route(request, conn)
        except ApiError as err:
            conn.respond(err.status, err.body())

    def _route(self, request: HttpRequest, conn: HttpConnection) -> None:
        method, path = request.method, request.path.rstrip("/") or "/"
        if path == "/health" and method == "GET":
            conn.respond(200 if self._accepting() else 503, b"", "text/plain")
            return
        if path == "/version" and method == "GET":
            conn.respond(200, json.dumps({"version": EMULATED_VLLM_VERSION}).encode())
            return
        if path == "/metrics" and method == "GET":
            conn.respond(200, self._exposition(), CONTENT_TYPE_LATEST)
            return
        routes: dict[str, Callable[[HttpRequest, HttpConnection], None]] = {
            "/v1/models": self._models,
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/generate": self._generate,
        }
        route = routes.get(path)
        if route is None:
            raise ApiError(404, f"no route {method} {path}")
        if not self._authorized(request):
            conn.respond(401, _UNAUTHORIZED, headers=(("www-authenticate", "Bearer"),))
            return
        expected = "GET" if path == "/v1/models" else "POST"
        if method != expected:
            raise ApiError(405, f"{path} takes {expected}, not {method}")
        route(request, conn)

    def _authorized(self, request: HttpRequest) -> bool:
        key = self.settings.api_key
        if key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def _models(self, request: HttpRequest, conn: HttpConnection) -> None:
        name = self.settings.served_model
        card = {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": self.settings.max_model_len,
        }
        conn.respond(200, json.dumps({"object": "list", "data": [card]}).encode())

    # request parsing
    def _parse(self, request: HttpRequest, model: type[_Req]) -> _Req:
        if not self._accepting():
            raise ApiError(503, "the server is draining and accepts no new requests")
        try:
            # Strict UTF-8: json.loads(bytes) would let encoded surrogates through.
            data = json.loads(request.body.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            raise ApiError(400, f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the JSON body must be an object")
        if b"\\ud" in request.body or b"\\uD" in request.body:
            _check_surrogates(data)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            raise ApiError(400, message, param) from None

    def _check_common(self, req: _Sampling) -> None:
        if req.model is not None and req.model != self.settings.served_model:
            raise ApiError(404, f"The model `{req.model}` does not exist.", "model")
        if req.n > 1:
            raise ApiError(400, "n > 1 is not supported by the emulator; send n requests", "n")

    def _sequence(
        self, prompt_text: str, prompt_tokens: int, max_tokens: int | None, ignore_eos: bool
    ) -> tuple[Sequence, int]:
        limit = self.settings.max_model_len
        out = max_tokens if max_tokens is not None else limit - prompt_tokens
        if prompt_tokens + out > limit or out < 1:
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{out} output tokens and your prompt contains {prompt_tokens} input tokens, for "
                f"a total of {prompt_tokens + out} tokens. Please reduce the length of the input "
                "prompt or the number of requested output tokens.",
                "input_tokens",
            )
        index = next(self._counter)
        reason: FinishReason = "length"
        if not ignore_eos:
            low, high = NATURAL_LENGTH_RANGE
            natural = low + int((index * _GOLDEN % 1) * (high - low))
            if natural < out:
                out, reason = natural, "stop"
        seq = Sequence(
            prompt_tokens=prompt_tokens,
            max_output_tokens=out,
            arrival=self._driver.now(),
            natural_finish=reason,
            prefix_key=hash(prompt_text),
        )
        return seq, index * 7919

    def _start(self, seq: Sequence, sink: SequenceSink, conn: HttpConnection) -> None:
        seq.sink = sink

        def client_gone() -> None:
            self._driver.abort(seq)

        conn.on_close = client_gone
        self._driver.submit(seq)

    def _chat(self, request: HttpRequest, conn: HttpConnection) -> None:
        req = self._parse(request, _ChatRequest)
        self._check_common(req)
        messages = []
        for m in req.messages:
            if isinstance(m.content, list):
                content = "".join(p.text or "" for p in m.content if p.type == "text")
            else:
                content = m.content or ""
            messages.append((m.role, content))
        text = render_chat(messages)
        tokens = self.settings.counter.count(text)
        limit = req.max_completion_tokens or req.max_tokens
        user_text = " ".join(c for _, c in messages)
        self._launch(req, conn, "chat", (text, tokens, user_text), limit)

    def _completions(self, request: HttpRequest, conn: HttpConnection) -> None:
        req = self._parse(request, _CompletionRequest)
        self._check_common(req)
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) > 1:
                raise ApiError(400, "batched prompts are not supported; send one each", "prompt")
            prompt = prompt[0]
        if isinstance(prompt, str):
            text, tokens = prompt, self.settings.counter.count(prompt)
        else:
            text, tokens = json.dumps(prompt), len(prompt)
        if tokens < 1:
            raise ApiError(400, "the prompt is empty", "prompt")
        self._launch(req, conn, "completion", (text, tokens, text), req.max_tokens)

    def _launch(
        self,
        req: _Sampling,
        conn: HttpConnection,
        kind: str,
        prompt: tuple[str, int, str],
        max_tokens: int | None,
    ) -> None:
        """Queue a chat or completion request; ``prompt`` is (rendered, tokens, user text)."""
        text, tokens, user_text = prompt
        seq, offset = self._sequence(text, tokens, max_tokens, req.ignore_eos)
        sink = _Sink(
            self,
            conn,
            kind=kind,
            fill=_filler_for(user_text),
            offset=offset,
            stream=req.stream,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
        )
        self._start(seq, sink, conn)

    def _generate(self, request: HttpRequest, conn: HttpConnection) -> None:
        req = self._parse(request, _GenerateRequest)
        tokens = max(1, self.settings.counter.count(req.prompt))
        seq, offset = self._sequence(req.prompt, tokens, req.max_tokens, req.ignore_eos)
        sink = _LegacySink(conn, _filler_for(req.prompt), offset, req.prompt, req.stream)
        self._start(seq, sink, conn)

    def new_id(self, prefix: str) -> str:
        """A response id in OpenAI's style."""
        return f"{prefix}-{uuid.uuid4().hex}"

    def usage(self, seq: Sequence) -> dict[str, int]:
        """OpenAI's usage object; completion tokens are the pieces emitted."""
        return {
            "prompt_tokens": seq.prompt_tokens,
            "total_tokens": seq.prompt_tokens + seq.output_tokens,
            "completion_tokens": seq.output_tokens,
        }


class _Sink:
    """Writes one chat or completion request's output as SSE chunks or one JSON body."""

    def __init__(
        self,
        api: OpenAIApi,
        conn: HttpConnection,
        *,
        kind: str,
        fill: Filler,
        offset: int,
        stream: bool,
        include_usage: bool,
    ) -> None:
        self._api = api
        self._conn = conn
        self._chat = kind == "chat"
        self._fill = fill
        self._offset = offset
        self._stream = stream
        self._include_usage = include_usage
        self._id = api.new_id("chatcmpl" if self._chat else "cmpl")
        self._created = int(time.time())
        head = (
            f'{{"id":"{self._id}","object":"'
            + ("chat.completion.chunk" if self._chat else "text_completion")
            + f'","created":{self._created},"model":{api._model_json},"choices":['
        )
        self._head = head.encode()
        if self._chat:
            self._open = b'{"index":0,"delta":{"content":"'
            self._close = b'"},"logprobs":null,"finish_reason":%b,"stop_reason":null}]}'
        else:
            self._open = b'{"index":0,"text":"'
            self._close = b'","logprobs":null,"finish_reason":%b,"stop_reason":null}]}'
        self._token_prefix = b"data: " + self._head + self._open
        self._token_suffix = self._close % b"null" + b"\n\n"
        if stream:
            conn.start_stream()

    def on_token(self, seq: Sequence, now: float) -> None:
        """Stream the new token, or answer whole once the sequence finished."""
        if not self._stream:
            if seq.status == "finished":
                self._conn.respond(200, self._whole(seq))
            return
        escaped = self._fill.escaped
        piece = escaped[(self._offset + seq.output_tokens - 1) % len(escaped)]
        if seq.output_tokens > 1 and seq.status != "finished":
            # The hot path: one preformatted chunk per token, written straight to the socket.
            self._conn.write_chunk_parts(self._token_prefix, piece, self._token_suffix)
            return
        finished = seq.status == "finished"
        reason = b'"%b"' % seq.finish_reason.encode() if finished and seq.finish_reason else b"null"
        parts = [b"data: ", self._head, self._open, piece, self._close % reason, b"\n\n"]
        if seq.output_tokens == 1 and self._chat:
            role = b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
            role += b'"finish_reason":null}]}\n\n'
            parts[:0] = [b"data: ", self._head, role]
        if not finished:
            self._conn.write_chunk(b"".join(parts))
            return
        if self._include_usage:
            usage = json.dumps(self._api.usage(seq)).encode()
            parts += [b"data: ", self._head, b'],"usage":', usage, b"}\n\n"]
        parts.append(b"data: [DONE]\n\n")
        self._conn.end_stream(b"".join(parts))

    def _whole(self, seq: Sequence) -> bytes:
        text = self._fill.text(self._offset, seq.output_tokens)
        choice: dict[str, Any] = {"index": 0, "logprobs": None}
        if self._chat:
            choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
        else:
            choice["text"] = text
        choice["finish_reason"] = seq.finish_reason
        choice["stop_reason"] = None
        body = {
            "id": self._id,
            "object": "chat.completion" if self._chat else "text_completion",
            "created": self._created,
            "model": self._api.settings.served_model,
            "choices": [choice],
            "usage": self._api.usage(seq),
        }
        return json.dumps(body, ensure_ascii=False).encode()


class _LegacySink:
    """``/generate``: ``{"text": [prompt + output]}``, or one such JSON line per token.

    JSON escapes each character on its own, so the text is kept escaped: the prompt escaped once,
    then each new token's precomputed escaped piece appended. Each line is the same bytes as
    dumping the whole text again, without re-escaping the prompt for every token.
    """

    def __init__(
        self, conn: HttpConnection, fill: Filler, offset: int, prompt: str, stream: bool
    ) -> None:
        self._conn = conn
        self._fill = fill
        self._offset = offset
        self._escaped_prompt = json.dumps(prompt, ensure_ascii=False)[1:-1]
        self._text: bytearray | None = None
        """``{"text": ["`` and the escaped text so far, as UTF-8; built at the first line."""
        self._pieces = 0
        """Output pieces already in ``_text``."""
        self._stream = stream
        if stream:
            conn.start_stream(200, "application/json")

    def on_token(self, seq: Sequence, now: float) -> None:
        """Send the text so far (streaming) or the whole text at the end."""
        finished = seq.status == "finished"
        if not self._stream and not finished:
            return
        text = self._text
        if text is None:
            # Encoded where the first line is written: a prompt UTF-8 cannot encode (a lone
            # surrogate) fails here, at the first token, not when the request arrives.
            text = self._text = bytearray(b'{"text": ["' + self._escaped_prompt.encode())
        escaped = self._fill.escaped
        while self._pieces < seq.output_tokens:
            text += escaped[(self._offset + self._pieces) % len(escaped)]
            self._pieces += 1
        if not self._stream:
            self._conn.respond(200, b"".join((text, b'"]}')))
        elif finished:
            self._conn.end_stream(b"".join((text, b'"]}\n')))
        else:
            self._conn.write_chunk(b"".join((text, b'"]}\n')))
