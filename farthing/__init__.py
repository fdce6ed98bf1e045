"""Farthing: agent micropayments in stablecoins.

Sub-packages: ``farthing.wallet``, ``farthing.ledger``, ``farthing.paywall``,
``farthing.agents``, ``farthing.inference`` and ``farthing.contracts``.
"""

from farthing.recursion_limit import keep_recursion_limit

# py_ecc and py-evm raise the recursion limit when imported; deep input then
# crashes the process instead of raising. Kept in one place: see the module.
keep_recursion_limit()

__version__ = "0.1.0"

__all__ = ["__version__"]
