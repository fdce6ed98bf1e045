"""Farthing: agent micropayments in stablecoins."""

__version__ = "0.1.0"
