"""LangChain chat models for a vLLM server, and answers held to a JSON schema.

``chat_model`` gives a ``ChatOpenAI`` pointed at a vLLM OpenAI-compatible
base URL, with every limit explicit: a request timeout and a connect timeout,
``max_tokens`` per answer, a retry count, and connection limits on its own
httpx clients, which ``close_chat_model`` / ``aclose_chat_model`` release.
The agents use it as their brain.

Decisions that money depends on never parse free text. ``structured_answer``
(and ``astructured_answer``) asks for ``response_format`` json_schema, which
vLLM enforces with its grammar backend, then validates the answer with the
pydantic model and returns it. vLLM ignores the older ``guided_json`` field
silently, so it is never used. Schemas should bound every string
(``max_length``) and number (``ge``/``le``): with bounds a grammar-constrained
answer always terminates; without them an answer can run to ``max_tokens``,
which is reported as ``StructuredOutputError`` (``finish_reason`` "length"),
never returned half-made.

``BuyDecision`` is such a schema, for an agent choosing whether to pay for a
resource; the wallet's policy still decides whether it may.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from farthing.inference.errors import InferenceConfigError, StructuredOutputError
from farthing.inference.settings import InferenceSettings

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.messages import BaseMessage
    from langchain_openai import ChatOpenAI

__all__ = [
    "NO_API_KEY",
    "BuyDecision",
    "aclose_chat_model",
    "astructured_answer",
    "chat_model",
    "close_chat_model",
    "response_format",
    "strict_schema",
    "structured_answer",
]

# vLLM started without --api-key accepts any key, but the OpenAI client
# insists on one; this placeholder is not a secret.
NO_API_KEY: Final = "EMPTY"
_NAME_MAX: Final = 64

Schema = TypeVar("Schema", bound=BaseModel)


class BuyDecision(BaseModel):
    """An agent's advice on one purchase: every field bounded, so the grammar always ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["buy", "skip"]
    relevance: int = Field(ge=0, le=10, description="How much the resource helps the task, 0-10.")
    reason: str = Field(max_length=160, description="One short sentence.")


def chat_model(
    base_url: str,
    *,
    model: str,
    settings: InferenceSettings,
    api_key: SecretStr | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    http_client: httpx.Client | None = None,
    http_async_client: httpx.AsyncClient | None = None,
) -> ChatOpenAI:
    """A ``ChatOpenAI`` for the vLLM server at ``base_url`` (ending in ``/v1``).

    Timeouts, ``max_tokens`` and the retry count come from ``settings``
    (``max_tokens`` may be lowered per model). ``temperature`` is a sampling
    parameter, not money, so it is a float like everywhere in OpenAI's API.
    ``http_client`` / ``http_async_client`` replace its own connections: the
    agents' paying clients (``farthing.agents.paying_client``), to buy from
    the paid gateway; ``.stream`` then pays through a channel, booked at the
    charge the stream's last event names (``farthing.agents.streamed``).
    """
    from langchain_openai import ChatOpenAI

    if not base_url.startswith(("http://", "https://")):
        raise InferenceConfigError(f"a chat model base URL must be http(s)://, got {base_url!r}")
    if not model:
        raise InferenceConfigError("name the model the server serves (GET /v1/models lists them)")
    limit = settings.max_tokens if max_tokens is None else max_tokens
    if not 0 < limit <= settings.max_tokens:
        raise InferenceConfigError(f"max_tokens must be 1 to {settings.max_tokens}, got {limit}")
    key = api_key or SecretStr(NO_API_KEY)
    timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    limits = httpx.Limits(
        max_connections=settings.connections_max, max_keepalive_connections=settings.connections_max
    )
    # Our own clients, not langchain-openai's process-wide cached ones: the
    # limits are explicit, and close_chat_model() can release the sockets.
    return ChatOpenAI(
        model=model,
        base_url=base_url.rstrip("/"),
        api_key=key,
        timeout=timeout,
        max_retries=settings.retry_count_max,
        max_completion_tokens=limit,
        temperature=temperature,
        http_client=http_client or httpx.Client(timeout=timeout, limits=limits),
        http_async_client=http_async_client or httpx.AsyncClient(timeout=timeout, limits=limits),
    )


def close_chat_model(chat: ChatOpenAI) -> None:
    """Close the sync connections of a ``chat_model`` (use ``aclose_chat_model`` in asyncio)."""
    if isinstance(chat.http_client, httpx.Client):
        chat.http_client.close()


async def aclose_chat_model(chat: ChatOpenAI) -> None:
    """Close both connection pools of a ``chat_model``."""
    close_chat_model(chat)
    if isinstance(chat.http_async_client, httpx.AsyncClient):
        await chat.http_async_client.aclose()


def strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every object closed and every property required.

    That is what OpenAI's ``strict`` mode means, and what keeps a grammar from
    inventing or dropping keys.
    """
    document = copy.deepcopy(schema.model_json_schema())
    _close(document)
    return document


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            node["additionalProperties"] = False
            node["required"] = sorted(node["properties"])
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for item in node:
            _close(item)


def response_format(schema: type[BaseModel], *, name: str | None = None) -> dict[str, Any]:
    """The ``response_format`` request field asking for ``schema`` (json_schema, strict)."""
    title = name or schema.__name__
    if not 0 < len(title) <= _NAME_MAX or not title.replace("_", "").replace("-", "").isalnum():
        raise InferenceConfigError(f"a schema name must be 1-{_NAME_MAX} letters, digits, _ or -")
    return {
        "type": "json_schema",
        "json_schema": {"name": title, "schema": strict_schema(schema), "strict": True},
    }


def structured_answer(
    chat: ChatOpenAI, messages: LanguageModelInput, schema: type[Schema], *, name: str | None = None
) -> Schema:
    """Ask ``chat`` for an answer that fits ``schema``; return it validated."""
    bound = chat.bind(response_format=response_format(schema, name=name))
    try:
        message = bound.invoke(messages)
    except Exception as exc:
        _raise_if_cut(exc, schema)
        raise
    return _validated(message, schema)


async def astructured_answer(
    chat: ChatOpenAI, messages: LanguageModelInput, schema: type[Schema], *, name: str | None = None
) -> Schema:
    """``structured_answer`` for asyncio."""
    bound = chat.bind(response_format=response_format(schema, name=name))
    try:
        message = await bound.ainvoke(messages)
    except Exception as exc:
        _raise_if_cut(exc, schema)
        raise
    return _validated(message, schema)


def _raise_if_cut(exc: Exception, schema: type[BaseModel]) -> None:
    # langchain-openai parses json_schema answers with the OpenAI SDK, which
    # raises on a truncated answer instead of returning it.
    from openai import LengthFinishReasonError

    if isinstance(exc, LengthFinishReasonError):
        raise StructuredOutputError(_cut_message(schema)) from None


def _validated(message: BaseMessage, schema: type[Schema]) -> Schema:
    finish = (message.response_metadata or {}).get("finish_reason")
    if finish == "length":
        raise StructuredOutputError(_cut_message(schema))
    content = message.content
    if not isinstance(content, str):
        content = "".join(_text_parts(content))
    try:
        return schema.model_validate_json(content)
    except ValidationError as exc:
        # The error names the fields, not the generated text, which may be long.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise StructuredOutputError(
            f"the answer does not fit {schema.__name__}: {problems}"
        ) from None


def _cut_message(schema: type[BaseModel]) -> str:
    return (
        f"the answer for {schema.__name__} was cut off at max_tokens; bound its strings "
        "(max_length) and numbers (ge/le), or raise max_tokens"
    )


def _text_parts(parts: Sequence[Any]) -> list[str]:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])
    return out
