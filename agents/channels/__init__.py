"""The agent's side of x402 ``batch-settlement``: deposit once, then pay by voucher.

``payer`` (choosing, opening and paying a channel, over the scheme's client
part ``farthing.paywall.schemes.batch_settlement.client``), ``deposits``
(what a deposit locks and whether a person must say yes), ``store`` (the
channel rows and their signing lease), ``books`` (deposits locked, charges
spent), ``recovery`` (a channel whose records or last request were lost,
from the chain), ``withdraw`` (stopping and leaving a channel), ``reconcile``
(the channels against the escrow's events), ``cli`` (``farthing agent
channels``).
"""

__all__: list[str] = []
