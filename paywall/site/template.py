"""``farthing paywall init``: a commented ``farthing.toml`` a blogger can read and edit.

The file names every setting ``farthing paywall serve --config`` reads
(``farthing.paywall.site.config``), with a comment on what it does. A fresh random
receipt secret is written next to it, readable by its owner only. With
``channels`` (``init --channels``) the route also sells through x402
``batch-settlement`` channels: the file gets a ``[channels]`` table and a
fresh receiver-authorizer key is written beside it, mode 600 (only its
address is ever shown).

The site's public address (``public_url``, ``init --public-url``) is written
when given: sign-in with the paying wallet names it, and ``serve`` answers
its host name. Without it the line stays commented and says that sign-in
waits for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from farthing.paywall.edge.receipts import write_receipt_secret
from farthing.paywall.errors import PaywallConfigError
from farthing.wallet.signer import LocalSigner

__all__ = ["InitChoices", "render_config", "write_authorizer_key", "write_config"]

RECEIPT_SECRET_NAME = "receipt.secret"
AUTHORIZER_KEY_NAME = "authorizer.key"


@dataclass(frozen=True, slots=True)
class InitChoices:
    """What ``init`` asks for; everything has a sensible default but the payee and the site."""

    upstream: str
    pay_to: str
    rpc_url: str
    token: str
    network: str = ""  # shown as a comment: the token and the chain are read from rpc_url
    path: str = "/posts/**"
    price: str = "0.1 CNY"
    preview_fraction: str = "0.33"
    currency: str = "CNY"
    rate: str = "0.1385"
    key_file: str | None = "relayer.key"
    facilitator_url: str | None = None
    database_url: str = "sqlite:///paywall.sqlite"
    channels: bool = False  # also sell through batch-settlement channels
    withdraw_delay_s: int = 900  # the payer's withdraw delay (the escrow's floor)
    public_url: str | None = None  # the site's address, e.g. https://blog.example


def _q(text: str) -> str:
    return json.dumps(text)  # a TOML basic string is a JSON string


def render_config(choices: InitChoices) -> str:
    if bool(choices.key_file) == bool(choices.facilitator_url):
        raise PaywallConfigError("choose one facilitator: a local key file or a remote URL")
    if choices.public_url is not None and not choices.public_url.startswith(
        ("http://", "https://")
    ):
        raise PaywallConfigError(
            f"the public URL must start with https:// or http://, got {choices.public_url[:80]!r}"
        )
    if choices.public_url:
        public = (
            "# The site's public address. Sign-in messages name it (never the request's\n"
            "# Host header), and serve answers only this host name and localhost.\n"
            f"public_url = {_q(choices.public_url)}\n"
        )
    else:
        public = (
            "# The site's public address. Set it: until then readers cannot sign in with the\n"
            "# wallet that paid (sign-in messages must name this site, never the request's\n"
            "# Host header), and serve answers only localhost.\n"
            '# public_url = "https://blog.example"\n'
        )
    if choices.facilitator_url:
        facilitator = (
            "# The facilitator verifies and settles payments. This site uses a remote one:\n"
            f"facilitator_url = {_q(choices.facilitator_url)}\n"
            '# facilitator_token_file = "facilitator.token"   # its bearer token, if it needs one\n'
            "# Or settle on-chain yourself with a funded key (mode 600):\n"
            '# key_file = "relayer.key"\n'
        )
    else:
        facilitator = (
            "# The facilitator verifies and settles payments. Local: this key pays the gas\n"
            "# (it needs a little ETH on the network, never USDC); keep it mode 600.\n"
            f"key_file = {_q(str(choices.key_file))}\n"
            "# Or use a remote facilitator instead:\n"
            '# facilitator_url = "https://facilitator.example"\n'
        )
    network = f" ({choices.network})" if choices.network else ""
    schemes = ""
    channels = ""
    if choices.channels:
        schemes = (
            '\nschemes = ["exact", "batch-settlement"]   # browsers pay once; agents use a channel'
        )
        channels = f"""
# Channels (x402 batch-settlement): a reader or agent deposits once and pays each
# article with a signed voucher, no transaction; earnings are claimed in batches.
[channels]
# This key signs claims and refunds (never funds: it needs no ETH or USDC); mode 600.
receiver_authorizer_key_file = {_q(AUTHORIZER_KEY_NAME)}
# How long a payer waits to withdraw unspent money: your window to claim (900 s to 30 days).
withdraw_delay_s = {choices.withdraw_delay_s}
# min_deposit = "0.5 USDC"       # the smallest deposit you accept
# claim_interval_s = 30          # how often earnings are checked for claiming
# claim_every_s = 3600           # claim a channel idle this long
# claim_threshold = "1 USDC"     # claim once this much is unclaimed
"""
    return f"""\
# farthing.toml: your site behind an x402 paywall. Serve it with
#   farthing paywall serve --config farthing.toml
# Paths in this file are relative to it.

# The site being paywalled: Farthing proxies every request to it.
upstream = {_q(choices.upstream)}

# Who gets paid: your wallet address.
pay_to = {_q(choices.pay_to)}

# The network{network}: the chain's JSON-RPC URL and the USDC token on it.
# Its name, decimals and EIP-712 domain are read from the chain.
rpc_url = {_q(choices.rpc_url)}
token = {_q(choices.token)}

{facilitator}
# Payment records (SQLite file or postgresql://...). Add ledger_database_url
# to book revenue in a double-entry ledger too.
database_url = {_q(choices.database_url)}

# The price of a fiat-priced article is converted at this rate, stored with each payment.
rounding = "exact"     # or "up": round a converted price up to whole atomic units

# Readers who paid read again for free: a signed receipt cookie (this secret signs
# it; keep it private) or by signing in with the wallet that paid.
receipt_secret_file = {_q(RECEIPT_SECRET_NAME)}
receipt_lifetime_s = 2592000     # 30 days

# On the payment page only this element of the article is cut to its preview;
# the site's header, navigation and styles stay. The first selector that matches wins.
preview_selectors = ["article", "main"]

{public}
[rates]
# USDC per one unit of each currency you price in, as text.
{choices.currency} = {_q(choices.rate)}

# Paid routes: a path glob (* one segment, ** any depth), a price, and the free share.
# The preview is whole blocks (paragraphs, headings, lists) from the start, as many
# as fit in that share of the text: a third of nine paragraphs may show only two.
[[routes]]
path = {_q(choices.path)}
price = {_q(choices.price)}
preview_fraction = {_q(choices.preview_fraction)}    # free: whole blocks up to this share
# preview_blocks = 3                  # or (and) at most this many whole blocks; the shorter wins
description = "an article"{schemes}
{channels}"""


def write_config(path: Path, choices: InitChoices, *, force: bool = False) -> list[Path]:
    """Write the config (and a receipt secret beside it); returns the files written."""
    if path.exists() and not force:
        raise PaywallConfigError(f"{path} already exists (pass --force to replace it)")
    text = render_config(choices)
    path.write_text(text, encoding="utf-8")
    written = [path]
    secret = path.parent / RECEIPT_SECRET_NAME
    if force or not secret.exists():
        write_receipt_secret(secret)
        written.append(secret)
    if choices.channels:
        key = path.parent / AUTHORIZER_KEY_NAME
        if force or not key.exists():
            write_authorizer_key(key)
            written.append(key)
    return written


def write_authorizer_key(path: Path) -> str:
    """A new receiver-authorizer key, readable by its owner only; returns its address."""
    signer = LocalSigner.generate()
    # Created 600 (no moment where others could read it), then written.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(signer.private_key.get_secret_value() + "\n")
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT
    return signer.address
