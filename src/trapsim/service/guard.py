"""Request guards of ``trapsim serve``: per-client rate limits and a request size limit.

:class:`Guard` is ASGI middleware in front of the API. Every HTTP request and
WebSocket handshake takes a token from its client's bucket (a token bucket:
``rate`` tokens a second, at most ``burst`` saved up); an empty bucket answers
429 with ``Retry-After`` (whole seconds until a token is back). ``GET /health`` is
not limited (probes poll it). A client is the
holder of the API token (whatever its address) or else its IP address, so sending
made-up tokens does not earn fresh buckets. A request body longer than
``max_body`` bytes answers 413: at once if its ``Content-Length`` says so, else as
soon as the bytes read pass the limit (a chunked body is never read whole).

:func:`document_errors` makes the OpenAPI schema say what the API answers on bad
input: every operation may return a ``4XX`` with ``{"detail": …}``.
"""

import hashlib
import math
import time
from collections import OrderedDict

import orjson
from starlette.exceptions import HTTPException

RATE = 1000.0
"""Default requests a second per client (`--rate-limit`): above the 500/s the service
benchmark asks from one client, far above the dashboard's few a second."""
BURST = 2000
"""Default requests a client may make at once after a quiet spell (`--rate-burst`)."""
MAX_BODY = 1 << 20
"""Default largest request body and WebSocket message, bytes (`--max-body-bytes`)."""
UNLIMITED = frozenset({"/health"})
"""Paths never rate limited: liveness probes poll them."""
MAX_CLIENTS = 10_000
"""Buckets kept; the least recently seen client is forgotten beyond this (it comes back
with a full bucket)."""


class TokenBuckets:
    """Token buckets by client key, least recently used first.

    Parameters
    ----------
    rate : float
        Tokens added per second (> 0).
    burst : int
        Bucket size (≥ 1); a new client starts full.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for ``key``; returns 0 if there was one, else the seconds until
        there is."""
        now = time.monotonic()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


class BodyTooLarge(HTTPException):
    """A request body passed the limit while it was read (FastAPI answers it as the 413
    it is; :class:`Guard` does for anything else)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes (--max-body-bytes)")


class Guard:
    """ASGI middleware: rate limits per client and a request body size limit.

    Parameters
    ----------
    app : ASGI application
    rate : float
        Requests a second per client; 0 turns rate limiting off.
    burst : int
        Requests a client may make at once (≥ 1).
    max_body : int
        Largest request body, bytes.
    token : str or None
        The API token: its holder is one client wherever it connects from.
    """

    def __init__(self, app, *, rate: float = RATE, burst: int = BURST,
                 max_body: int = MAX_BODY, token: str | None = None) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, max(1, burst)) if rate > 0 else None
        self.max_body = max_body
        self._token = _digest(f"Bearer {token}") if token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.buckets is not None and scope["path"] not in UNLIMITED:
            wait = self.buckets.take(self._client(scope))
            if wait > 0:
                await self._refuse(scope, send, 429, "too many requests: the limit is "
                                   f"{self.buckets.rate:g}/s (burst {self.buckets.burst}) per "
                                   f"client; retry in {wait:.2f} s",
                                   [(b"retry-after", str(math.ceil(wait)).encode())])
                return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            detail = (f"request body larger than {self.max_body} bytes (--max-body-bytes)"
                      if length.isdigit() else f"bad Content-Length {length!r}")
            await self._refuse(scope, send, 413 if length.isdigit() else 400, detail)
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope, receive, send) -> None:
        """Run the app counting the body's bytes as they are read."""
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._refuse(scope, send, 413, exc.detail)

    def _client(self, scope) -> str:
        auth = _header(scope, b"authorization")
        if self._token is not None and auth is not None and _digest(auth) == self._token:
            return "token"
        client = scope.get("client")
        return client[0] if client else "unknown"

    @staticmethod
    async def _refuse(scope, send, status: int, detail: str,
                      headers: list[tuple[bytes, bytes]] = ()) -> None:
        if scope["type"] == "websocket":
            # Before the handshake is accepted a close is an HTTP 403 to the client.
            await send({"type": "websocket.close", "code": 1013, "reason": detail[:120]})
            return
        body = orjson.dumps({"detail": detail})
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *headers]})
        await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _digest(text: str) -> bytes:
    """A fixed-length digest: the token is compared without keeping or timing it."""
    return hashlib.sha256(text.encode("latin-1", "replace")).digest()


ERROR = {"title": "Error", "type": "object", "required": ["detail"], "properties": {
    "detail": {"title": "Detail", "description": "What is wrong: a sentence, or FastAPI's "
               "list of validation errors.", "anyOf": [
                   {"type": "string"},
                   {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}]}}}
"""Schema of every 4xx body: ``{"detail": text}`` or FastAPI's validation error list."""


def document_errors(app, symbols: tuple[str, ...]) -> None:
    """Make ``app``'s OpenAPI schema document the 4xx answers of every operation.

    Each operation gets a ``4XX`` response (401/403 for writes without the token, 404
    for an unknown symbol or id, 413 for a large body, 422 for bad input, 429 over the
    rate limit) whose body is :data:`ERROR`; a documented 422 gets the same body (an
    endpoint's own checks answer a sentence, FastAPI's validation a list). A ``symbol``
    path parameter is documented as one of the run's ``symbols``.
    """
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR
        components.setdefault("ValidationError", {"type": "object"})
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for p in operation.get("parameters", ()):
                    if p["name"] == "symbol" and p["in"] == "path":
                        p["schema"]["enum"] = list(symbols)
                responses = operation.setdefault("responses", {})
                responses.setdefault("4XX", {"description": "Bad request (see detail)",
                                             "content": body})
                if "422" in responses:
                    responses["422"]["content"] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
