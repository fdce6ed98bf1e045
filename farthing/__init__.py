"""Farthing: agent micropayments in stablecoins.

Sub-packages: ``farthing.wallet``, ``farthing.ledger``, ``farthing.paywall``,
``farthing.agents``, ``farthing.inference`` and ``farthing.contracts``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
