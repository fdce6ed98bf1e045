"""The facilitator's catalog: what it has verified or settled, searchable, in its database.

One row per offer: a resource (its URL, and its tool name for MCP, or its
method for HTTP) sold in one scheme on one network to one payee. The row keeps the
resource's checked declaration, its sanitized service metadata and the
``accepts`` entry that was paid, so the list endpoint answers in the SDK's
shape (``farthing.paywall.discovery.listing``). It lives in the facilitator's
database (a SQLite file or PostgreSQL, opened the way the payment database is:
``farthing.paywall.records.database``), never only in memory, so it outlives
a restart.

Writes are bounded (:data:`ENTRIES_MAX` rows in all, and
:data:`ENTRIES_PER_PAYEE_MAX` for any one ``payTo``): a full catalog still
refreshes the rows it has and refuses new ones. An amount is kept as its
decimal text and as that text left-padded with zeros to 78 digits, so a
price ceiling is a string comparison the database can index, never a float.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text, func, select
from sqlalchemy.sql.elements import ColumnElement

from farthing.paywall.discovery.resolver import RESOLVE_TIMEOUT_S_DEFAULT, Resolver, SystemResolver
from farthing.paywall.records.database import create_tables, database_errors, open_paywall_database

__all__ = [
    "CATALOG_TABLE",
    "ENTRIES_MAX",
    "ENTRIES_PER_PAYEE_MAX",
    "Catalog",
    "CatalogPage",
    "Offer",
    "Search",
]

ENTRIES_MAX: Final = 10_000
ENTRIES_PER_PAYEE_MAX: Final = 200
_AMOUNT_DIGITS: Final = 78  # a uint256 in decimal
_BUSY_TIMEOUT_S: Final = 5.0

METADATA: Final = MetaData()
CATALOG_TABLE: Final = Table(
    "discovery_offer",
    METADATA,
    Column("id", String(64), primary_key=True),  # sha256 of what makes the offer one
    Column("kind", String(8), nullable=False),  # "http" or "mcp"
    Column("url", String(2048), nullable=False),
    Column("method", String(8)),
    Column("tool_name", String(128)),
    Column("description", String(512)),
    Column("mime_type", String(128)),
    Column("service_name", String(32)),
    Column("tags", String(200), nullable=False),  # "|tag|tag|", lower-cased, for matching
    Column("tags_shown", String(200), nullable=False),  # JSON list as sent
    Column("icon_url", String(2048)),
    Column("scheme", String(32), nullable=False),
    Column("network", String(64), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("pay_to", String(64), nullable=False),
    Column("amount", String(_AMOUNT_DIGITS), nullable=False),
    Column("amount_key", String(_AMOUNT_DIGITS), nullable=False),
    Column("accepts", Text, nullable=False),  # the accepts entry, JSON
    Column("declaration", Text, nullable=False),  # the checked bazaar extension, JSON
    Column("search_text", Text, nullable=False),  # lower-cased words to search
    Column("updated_at_ns", BigInteger, nullable=False),
    Index("ix_discovery_offer_amount", "amount_key"),
    Index("ix_discovery_offer_updated", "updated_at_ns"),
    Index("ix_discovery_offer_pay_to", "pay_to"),
)


@dataclass(frozen=True, slots=True)
class Offer:
    """One checked catalog entry, ready to store (built by ``farthing.paywall.discovery.ingest``)."""

    kind: str
    url: str
    method: str | None
    tool_name: str | None
    description: str | None
    mime_type: str | None
    service_name: str | None
    tags: tuple[str, ...]
    icon_url: str | None
    scheme: str
    network: str
    asset: str
    pay_to: str
    amount: int
    accepts: dict[str, Any]
    declaration: dict[str, Any]

    @property
    def key(self) -> str:
        name = self.tool_name if self.kind == "mcp" else self.method
        # The payee is part of it: a payment to someone else never rewrites a seller's entry.
        parts = (self.kind, self.url, name or "", self.scheme, self.network, self.pay_to.lower())
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Search:
    """What a caller asks the catalog; every field is already bounded (``listing`` checks them)."""

    words: tuple[str, ...] = ()
    tag: str | None = None
    kind: str | None = None
    pay_to: str | None = None
    scheme: str | None = None
    network: str | None = None
    asset: str | None = None
    amount_max: int | None = None
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """One page of offers, newest first, and how many match in all."""

    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


def _amount_key(amount: int) -> str:
    return str(amount).rjust(_AMOUNT_DIGITS, "0")


def _like(text: str) -> str:
    """``text`` as a LIKE operand that matches only itself (``\\`` escapes)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Catalog:
    """The catalog in a database at ``url`` (``sqlite:///PATH`` or ``postgresql://…``)."""

    def __init__(
        self,
        url: str,
        *,
        entries_max: int = ENTRIES_MAX,
        entries_per_payee_max: int = ENTRIES_PER_PAYEE_MAX,
        local_resources: bool = True,
        resolver: Resolver | None = None,
        resolve_timeout_s: float = RESOLVE_TIMEOUT_S_DEFAULT,
    ) -> None:
        database = open_paywall_database(url, busy_timeout_s=_BUSY_TIMEOUT_S)
        # False for a facilitator strangers reach: a resource at a loopback or
        # private host, as written or as its name resolves (``resolver``, at
        # most ``resolve_timeout_s`` a host), is not listed (no reader is
        # steered into its own network).
        self.local_resources = local_resources
        self.resolver: Resolver = resolver if resolver is not None else SystemResolver()
        self.resolve_timeout_s = resolve_timeout_s
        self.engine = database.engine
        self.display_url = database.display_url
        self.entries_max = entries_max
        self.entries_per_payee_max = entries_per_payee_max
        with database_errors("discovery catalog", self.display_url):
            create_tables(self.engine, METADATA)

    @classmethod
    def sqlite(
        cls,
        path: Path,
        *,
        local_resources: bool = True,
        resolver: Resolver | None = None,
        **limits: int,
    ) -> Catalog:
        return cls(
            f"sqlite:///{path}", local_resources=local_resources, resolver=resolver, **limits
        )

    def dispose(self) -> None:
        self.engine.dispose()

    def record(self, offer: Offer, *, now_ns: int | None = None) -> str:
        """Store or refresh ``offer``: ``"added"``, ``"updated"`` or ``"full"`` (not stored)."""
        now_ns = now_ns or time.time_ns()
        words = [offer.url, offer.description, offer.service_name, offer.tool_name, *offer.tags]
        row = {
            "kind": offer.kind,
            "url": offer.url,
            "method": offer.method,
            "tool_name": offer.tool_name,
            "description": offer.description,
            "mime_type": offer.mime_type,
            "service_name": offer.service_name,
            "tags": "|" + "|".join(t.lower() for t in offer.tags) + "|",
            "tags_shown": json.dumps(list(offer.tags)),
            "icon_url": offer.icon_url,
            "scheme": offer.scheme,
            "network": offer.network,
            "asset": offer.asset.lower(),
            "pay_to": offer.pay_to.lower(),
            "amount": str(offer.amount),
            "amount_key": _amount_key(offer.amount),
            "accepts": json.dumps(offer.accepts, separators=(",", ":")),
            "declaration": json.dumps(offer.declaration, separators=(",", ":")),
            "search_text": " ".join(w for w in words if w).lower(),
            "updated_at_ns": now_ns,
        }
        table = CATALOG_TABLE
        with database_errors("discovery catalog", self.display_url), self.engine.begin() as tx:
            exists = tx.execute(select(table.c.id).where(table.c.id == offer.key)).first()
            if exists is not None:
                tx.execute(table.update().where(table.c.id == offer.key).values(**row))
                return "updated"
            total = tx.execute(select(func.count()).select_from(table)).scalar_one()
            payee = tx.execute(
                select(func.count()).where(table.c.pay_to == row["pay_to"])
            ).scalar_one()
            if total >= self.entries_max or payee >= self.entries_per_payee_max:
                return "full"
            tx.execute(table.insert().values(id=offer.key, **row))
            return "added"

    def _filters(self, search: Search) -> Sequence[ColumnElement[bool]]:
        c = CATALOG_TABLE.c
        where: list[ColumnElement[bool]] = [
            c.search_text.like(f"%{_like(word.lower())}%", escape="\\") for word in search.words
        ]
        if search.tag is not None:
            where.append(c.tags.like(f"%|{_like(search.tag.lower())}|%", escape="\\"))
        for column, value in (
            (c.kind, search.kind),
            (c.scheme, search.scheme),
            (c.network, search.network),
            (c.pay_to, search.pay_to.lower() if search.pay_to else None),
            (c.asset, search.asset.lower() if search.asset else None),
        ):
            if value is not None:
                where.append(column == value)
        if search.amount_max is not None:
            where.append(c.amount_key <= _amount_key(search.amount_max))
        return where

    def search(self, search: Search) -> CatalogPage:
        """The offers matching every filter of ``search``, newest first, one page of them."""
        table = CATALOG_TABLE
        where = self._filters(search)
        with database_errors("discovery catalog", self.display_url), self.engine.connect() as db:
            total = db.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            rows = db.execute(
                select(table)
                .where(*where)
                .order_by(table.c.updated_at_ns.desc(), table.c.id)
                .limit(search.limit)
                .offset(search.offset)
            ).mappings()
            items = [_item(row) for row in rows]
        return CatalogPage(items, int(total))


def _item(row: Any) -> dict[str, Any]:
    """A row in the bazaar list endpoint's shape (the SDK's ``DiscoveryResource``)."""
    item: dict[str, Any] = {
        "resource": row["url"],
        "type": row["kind"],
        "x402Version": 2,
        "accepts": [json.loads(row["accepts"])],
        "lastUpdated": _iso(row["updated_at_ns"]),
    }
    for key, column in (
        ("description", "description"),
        ("mimeType", "mime_type"),
        ("serviceName", "service_name"),
        ("iconUrl", "icon_url"),
        ("method", "method"),
        ("toolName", "tool_name"),
    ):
        if row[column] is not None:
            item[key] = row[column]
    tags = json.loads(row["tags_shown"])
    if tags:
        item["tags"] = tags
    item["extensions"] = {"bazaar": json.loads(row["declaration"])}
    return item
