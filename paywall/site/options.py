"""The ``--channel-*`` options, declared once for every command that sells through channels.

``farthing paywall serve`` and ``farthing inference gateway`` both take them;
each feeds the :class:`~farthing.paywall.site.channels.ChannelSettings` field
of the same name. Only typer is imported here, so a command's ``--help`` does
not load the paywall.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = [
    "ChannelClaimEveryOpt",
    "ChannelClaimIntervalOpt",
    "ChannelClaimThresholdOpt",
    "ChannelMinDepositOpt",
    "ChannelWithdrawDelayOpt",
    "channel_authorizer_option",
]

ChannelWithdrawDelayOpt = Annotated[
    int | None,
    typer.Option(
        "--channel-withdraw-delay-s", min=900, max=2_592_000, help="The payer's withdraw delay."
    ),
]
ChannelMinDepositOpt = Annotated[
    str | None,
    typer.Option("--channel-min-deposit", help="Smallest deposit, e.g. '0.5 USDC'."),
]
ChannelClaimIntervalOpt = Annotated[
    float | None,
    typer.Option(
        "--channel-claim-interval-s", min=0.05, max=600.0, help="How often claims are checked."
    ),
]
ChannelClaimEveryOpt = Annotated[
    float | None,
    typer.Option("--channel-claim-every-s", min=0.05, help="Claim a channel idle this long."),
]
ChannelClaimThresholdOpt = Annotated[
    str | None,
    typer.Option("--channel-claim-threshold", help="Claim once this much is unclaimed."),
]


def channel_authorizer_option(help_text: str) -> Any:
    """``--channel-authorizer-key-file``, with help saying what the command sells."""
    return typer.Option("--channel-authorizer-key-file", help=help_text)
