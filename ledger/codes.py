"""Farthing's conventional account and transfer codes.

TigerBeetle leaves ``code`` to the application ("why this account or
transfer exists"). These are the values the payment helpers and the reports
use; any other non-zero code is still accepted by the books.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["AccountCode", "TransferCode"]


class AccountCode(IntEnum):
    FUNDING = 1  # where budgets come from (the operator's side)
    BUDGET = 2  # an agent's budget: debits must not exceed credits
    PAYEE = 3  # a counterparty the agent pays
    REVENUE = 4  # a merchant's income, per resource or per payer
    PAYER = 5  # a counterparty that pays the merchant


class TransferCode(IntEnum):
    FUNDING = 1
    PAYMENT = 2
    REVENUE = 3
    CORRECTION = 4
