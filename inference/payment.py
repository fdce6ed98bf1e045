"""How ``farthing inference gateway`` is paid, built from its flags.

The facilitator (local by ``--key-file``, or remote by ``--facilitator-url``),
the payment database, the revenue books, channels (``--channel-*``) and
``upto`` (``--upto``: the settler payers name is the local facilitator's key,
or the address a remote one lists for ``upto`` in ``/supported``). The
paywall and the chain stack are imported inside, so the command's own checks
answer before they load. A problem is one line (``farthing.console.fail``).
"""

from __future__ import annotations

from typing import Any

from farthing.console import fail
from farthing.inference.settings import InferenceSettings

__all__ = ["gateway_payment"]


def gateway_payment(settings: InferenceSettings, **flags: Any) -> tuple[Any, Any]:
    """The gateway's payment from the command's flags, and the channel claimer to run beside it (or None)."""
    from farthing.inference.gateway import GatewayPayment
    from farthing.paywall.cli import default_database_url, revenue_books, settlement_facilitator
    from farthing.paywall.keys import load_token_file
    from farthing.paywall.records.store import PaymentStore
    from farthing.paywall.site.channels import (
        background_claimer,
        build_channel_options,
        load_receiver_authorizer,
        require_channel_facilitator,
    )
    from farthing.wallet.chain import open_chain
    from farthing.wallet.token import read_asset

    if not settings.pay_to or not flags["rpc_url"] or not flags["token"]:  # gateway() checked
        fail("a paid gateway needs --pay-to, --rpc-url and --token")
    channel_settings = flags["channels"]
    # Read before the chain is opened, so a bad key file is the first thing said.
    authorizer = None if channel_settings is None else load_receiver_authorizer(channel_settings)
    chain = open_chain(flags["rpc_url"])
    asset = read_asset(chain, flags["token"])
    facilitator = settlement_facilitator(
        chain,
        facilitator_url=flags["facilitator_url"],
        facilitator_token_file=flags["facilitator_token_file"],
        key_file=flags["key_file"],
    )
    books = revenue_books(flags["ledger_database_url"])
    database_url = flags["database_url"] or default_database_url(flags["data_dir"])
    store = PaymentStore(database_url)
    channels = claimer = None
    if channel_settings is not None and authorizer is not None:
        token_file = flags["facilitator_token_file"]
        require_channel_facilitator(
            facilitator,
            chain.network,
            probe_token=(
                load_token_file(token_file).get_secret_value()
                if flags["facilitator_url"] and token_file
                else None
            ),
        )
        channels = build_channel_options(
            channel_settings,
            chain=chain,
            asset=asset,
            database_url=database_url,
            authorizer=authorizer,
            claim_in_background=False,  # run by BackgroundClaims: see gateway()
        )
        claimer = background_claimer(channels, facilitator, books)
    upto_facilitator = None
    if flags["upto"]:
        token_file = flags["facilitator_token_file"]
        probe_token = (
            load_token_file(token_file).get_secret_value()
            if flags["facilitator_url"] and token_file
            else None
        )
        upto_facilitator = _upto_facilitator(facilitator, chain.network, probe_token)
    payment = GatewayPayment(
        facilitator=facilitator,
        store=store,
        asset=asset,
        pay_to=settings.pay_to,
        books=books,
        public_url=flags["public_url"],
        channels=channels,
        upto=flags["upto"],
        upto_facilitator=upto_facilitator,
    )
    return payment, claimer


def _upto_facilitator(facilitator: Any, network: str, probe_token: str | None) -> str | None:
    """Whom upto payers name to settle: the local facilitator's key (None), or the remote's; fails if none.

    The remote is asked through a client of its own, closed in the short event
    loop that asks: the paywall's pooled client would keep a connection bound to
    that dead loop, and the first paid request would be a 500 ("Event loop is closed").
    """
    import anyio

    from farthing.errors import FarthingError
    from farthing.paywall.facilitator.remote import RemoteFacilitator

    if not isinstance(facilitator, RemoteFacilitator):
        return None  # the local facilitator settles upto with its own key
    probe = RemoteFacilitator(facilitator.url, token=probe_token, timeout_s=10.0)

    async def ask() -> str | None:
        try:
            return await probe.upto_facilitator(network)
        finally:
            await probe.aclose()

    try:
        address = anyio.run(ask)
    except FarthingError as exc:
        fail(f"--upto: could not ask the facilitator what it settles: {exc}")
    if address is None:
        fail(
            f"--upto: the facilitator at {facilitator.url} does not settle upto on {network} "
            "(its /supported lists no upto kind with a facilitatorAddress)"
        )
    return address
