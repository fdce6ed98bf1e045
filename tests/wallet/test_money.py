"""Money parsing is exact or refused: human amounts become int atomic units, never floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farthing.wallet.address import checksum
from farthing.wallet.errors import AddressError, AmountError, NetworkError
from farthing.wallet.money import Asset, Money, format_amount, parse_amount, parse_atomic
from farthing.wallet.networks import get_network


@pytest.mark.parametrize(
    ("text", "decimals", "atomic"),
    [
        ("0.1", 6, 100_000),
        ("1", 6, 1_000_000),
        ("1.", 6, 1_000_000),
        (".5", 6, 500_000),
        ("0.000001", 6, 1),
        ("  12.340000 ", 6, 12_340_000),
        ("7", 0, 7),
    ],
)
def test_parse_amount_exact(text: str, decimals: int, atomic: int) -> None:
    assert parse_amount(text, decimals) == atomic


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0.0000001", "more than 6 decimal places"),
        ("-1", "negative"),
        ("1e3", "not a decimal amount"),
        ("1,000", "not a decimal amount"),
        ("", "not a decimal amount"),
        ("NaN", "not a decimal amount"),
        ("inf", "not a decimal amount"),
        ("0x10", "not a decimal amount"),
    ],
)
def test_parse_amount_refuses(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        parse_amount(text, 6)


def test_parse_amount_refuses_non_text() -> None:
    with pytest.raises(AmountError):
        parse_amount(0.1, 6)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=18))
def test_format_then_parse_round_trips(atomic: int, decimals: int) -> None:
    assert parse_amount(format_amount(atomic, decimals), decimals) == atomic


def test_parse_atomic_wire_strings() -> None:
    assert parse_atomic("100000") == 100_000
    for bad in ["-1", "1.0", "0x10", " 1", "", "١٢"]:
        with pytest.raises(AmountError):
            parse_atomic(bad)
    with pytest.raises(AmountError):
        parse_atomic(True)  # type: ignore[arg-type]


def test_money_refuses_float_and_formats() -> None:
    usdc = get_network("base").usdc
    assert usdc is not None
    assert str(Money(1_500_000, usdc)) == "1.5 USDC"
    with pytest.raises(AmountError):
        Money(1.5, usdc)  # type: ignore[arg-type]
    with pytest.raises(AmountError):
        Money(-1, usdc)


def test_asset_chain_id_and_validation() -> None:
    asset = Asset("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", 6, "USDC", "2")
    assert asset.chain_id == 84532
    assert asset.parse("0.25") == 250_000
    with pytest.raises(AmountError):
        Asset("solana:abc", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", 6, "USDC", "2")


def test_network_registry() -> None:
    assert get_network("base-sepolia").caip2 == "eip155:84532"
    assert get_network("eip155:8453").name == "base"
    base = get_network("BASE")
    assert base.usdc is not None and base.usdc.name == "USD Coin"
    sepolia = get_network("base-sepolia")
    assert sepolia.usdc is not None and sepolia.usdc.name == "USDC"
    assert get_network("local").chain_id == 31337 and get_network("local").is_local
    with pytest.raises(NetworkError, match="unknown network 'mainnet'"):
        get_network("mainnet")


def test_checksum_addresses() -> None:
    lower = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
    assert checksum(lower) == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    for bad in [
        "0x1234",
        "833589fcd6edb6e08f4c7c32d4f71b54bda02913",
        "0xZZ3589fcd6edb6e08f4c7c32d4f71b54bda02913",
    ]:
        with pytest.raises(AddressError):
            checksum(bad)
    # One flipped letter in a checksummed address is a typo, not a new address.
    with pytest.raises(AddressError, match="checksum"):
        checksum("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".replace("fCD", "fcD"))
