"""The vLLM server behind the gateway, reached over HTTP with every wait bounded.

``Upstream`` wraps one ``httpx.AsyncClient`` with explicit timeouts and
connection limits, plus an overall deadline per call (``anyio.fail_after``),
because httpx's timeouts bound each read, not the whole answer. Transport
failures become exceptions the gateway maps to HTTP statuses:

- nothing listens (connection refused)  → ``UpstreamUnavailableError`` → 503
- no answer within the stated timeout   → ``UpstreamTimeoutError``    → 504
- the connection broke mid-answer (the
  process died), or an unreadable answer → ``InferenceUpstreamError``  → 502

Answers with an HTTP status come back as :class:`UpstreamAnswer` values;
deciding what a 4xx means is the caller's business. A streamed chat
(:meth:`Upstream.stream_chat`) comes back as an :class:`UpstreamStream`
once its headers arrived: its body is read chunk by chunk as vLLM sends it,
each read bounded by the timeout, the whole bounded by the caller.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx

from farthing.inference.errors import (
    InferenceConfigError,
    InferenceUpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

__all__ = [
    "ModelInfo",
    "TokenCount",
    "Upstream",
    "UpstreamAnswer",
    "UpstreamStream",
    "upstream_root",
]

_GRACE_S: Final = 1.0  # the overall deadline sits just past httpx's own timeouts
_ANSWER_BYTES_MAX: Final = 64 * 1024 * 1024
# After a stream's [DONE]: what is read to end its body and keep its connection.
_DRAIN_BYTES_MAX: Final = 64 * 1024
_DRAIN_S: Final = 1.0


def upstream_root(url: str) -> str:
    """The server's root URL, whether given as ``http://h:p`` or the OpenAI base ``http://h:p/v1``."""
    if not url.startswith(("http://", "https://")):
        raise InferenceConfigError(f"the upstream URL must be http(s)://, got {url!r}")
    root = url.rstrip("/")
    return root.removesuffix("/v1")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model the upstream serves, with its context length when it says."""

    id: str
    max_model_len: int | None


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Prompt tokens as the model's own tokenizer and chat template count them."""

    count: int
    max_model_len: int | None


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An HTTP answer from the upstream, kept as bytes to pass on unchanged."""

    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error_message(self) -> str:
        """vLLM's ``{"error": {"message": ...}}``, or a short excerpt of the body."""
        data = self.json()
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
            if isinstance(data.get("message"), str):
                return str(data["message"])
        return self.body[:200].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class UpstreamStream:
    """A streamed answer whose headers arrived: its status, type, and its body as it comes."""

    status: int
    content_type: str
    response: httpx.Response

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; a broken connection raises ``InferenceUpstreamError``."""
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamTimeoutError("the model server stopped sending mid-stream") from None
        except httpx.HTTPError as exc:
            raise InferenceUpstreamError(
                f"the stream broke mid-answer ({type(exc).__name__}): the server may have died"
            ) from None

    async def read(self, bytes_max: int = _ANSWER_BYTES_MAX) -> UpstreamAnswer:
        """The whole body (an error, or an answer that did not stream), at most ``bytes_max``."""
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > bytes_max:
                raise InferenceUpstreamError(f"the model server answered over {bytes_max} bytes")
        return UpstreamAnswer(self.status, bytes(body), self.content_type)

    @staticmethod
    async def drain(rest: AsyncIterator[bytes]) -> None:
        """Read what is left of ``rest`` (:meth:`chunks`, part read) after the stream's end.

        A response closed before its body ended takes its connection with it,
        so the next stream would open a new one (a TCP handshake and the
        server's accept before its first token); one read to the end puts the
        connection back in the pool. Bounded in bytes and time; failures are
        left to the close that follows.
        """
        left = _DRAIN_BYTES_MAX
        with anyio.move_on_after(_DRAIN_S):
            try:
                async for chunk in rest:
                    left -= len(chunk)
                    if left < 0:
                        return
            except InferenceUpstreamError:
                return


class Upstream:
    """The vLLM server at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        quick_timeout_s: float,
        connections_max: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = upstream_root(url)
        self.timeout_s = timeout_s
        self.quick_timeout_s = quick_timeout_s
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=connections_max, max_keepalive_connections=connections_max
            ),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Upstream({self.url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextmanager
    def _failures(self, what: str, limit: float) -> Iterator[None]:
        """A call's transport failures as the gateway's errors (see the module doc)."""
        try:
            yield
        except TimeoutError:
            raise UpstreamTimeoutError(f"{what} did not answer within {limit:g} s") from None
        except httpx.ConnectError:
            raise UpstreamUnavailableError(
                f"nothing answers at {self.url} (is vLLM running?)"
            ) from None
        except httpx.TimeoutException:
            raise UpstreamTimeoutError(f"{what} did not answer within {limit:g} s") from None
        except httpx.HTTPError as exc:
            raise InferenceUpstreamError(
                f"{what} failed mid-answer ({type(exc).__name__}): the server may have died"
            ) from None

    async def request(
        self, method: str, path: str, *, body: Any = None, timeout_s: float | None = None
    ) -> UpstreamAnswer:
        """One call with an overall deadline; transport failures raise (see the module doc)."""
        limit = timeout_s or self.timeout_s
        what = f"{method} {self.url}{path}"
        with self._failures(what, limit), anyio.fail_after(limit + _GRACE_S):
            response = await self._client.request(
                method,
                path,
                json=body,
                timeout=httpx.Timeout(
                    limit, connect=min(limit, self._client.timeout.connect or limit)
                ),
            )
        if len(response.content) > _ANSWER_BYTES_MAX:
            raise InferenceUpstreamError(f"{what} answered more than {_ANSWER_BYTES_MAX} bytes")
        return UpstreamAnswer(
            response.status_code, response.content, response.headers.get("content-type", "")
        )

    async def models(self) -> list[ModelInfo]:
        answer = await self.request("GET", "/v1/models", timeout_s=self.quick_timeout_s)
        data = answer.json()
        if (
            answer.status != 200
            or not isinstance(data, dict)
            or not isinstance(data.get("data"), list)
        ):
            raise InferenceUpstreamError(
                f"{self.url}/v1/models answered HTTP {answer.status}, not a model list"
            )
        out = []
        for item in data["data"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                length = item.get("max_model_len")
                out.append(ModelInfo(item["id"], length if isinstance(length, int) else None))
        return out

    async def tokenize(self, body: dict[str, Any]) -> TokenCount | UpstreamAnswer:
        """Count a chat request's prompt with vLLM's ``/tokenize``; a 4xx comes back as the answer."""
        answer = await self.request("POST", "/tokenize", body=body, timeout_s=self.quick_timeout_s)
        if 400 <= answer.status < 500:
            return answer
        data = answer.json()
        count = data.get("count") if isinstance(data, dict) else None
        if (
            answer.status != 200
            or isinstance(count, bool)
            or not isinstance(count, int)
            or count < 0
        ):
            raise InferenceUpstreamError(
                f"{self.url}/tokenize answered HTTP {answer.status} without a count"
            )
        length = data.get("max_model_len")
        return TokenCount(
            count, length if isinstance(length, int) and not isinstance(length, bool) else None
        )

    async def chat(self, body: dict[str, Any]) -> UpstreamAnswer:
        return await self.request("POST", "/v1/chat/completions", body=body)

    @asynccontextmanager
    async def stream_chat(self, body: dict[str, Any]) -> AsyncIterator[UpstreamStream]:
        """POST a streamed chat; the answer once its headers came (within the timeout)."""
        limit = self.timeout_s
        what = f"POST {self.url}/v1/chat/completions"
        request = self._client.build_request(
            "POST",
            "/v1/chat/completions",
            json=body,
            timeout=httpx.Timeout(limit, connect=min(limit, self._client.timeout.connect or limit)),
        )
        with self._failures(what, limit), anyio.fail_after(limit + _GRACE_S):
            response = await self._client.send(request, stream=True)
        try:
            yield UpstreamStream(
                response.status_code, response.headers.get("content-type", ""), response
            )
        finally:
            await response.aclose()

    async def metrics(self) -> str:
        answer = await self.request("GET", "/metrics", timeout_s=self.quick_timeout_s)
        if answer.status != 200:
            raise InferenceUpstreamError(f"{self.url}/metrics answered HTTP {answer.status}")
        return answer.body.decode("utf-8", "replace")
