"""Kubernetes quantities parse to the values the API server means, and bad ones say why."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpu_inventory.operator.accounting import MAX_COUNT, QuantityError, parse_count, parse_quantity

VALID = [
    ("plain-int", "3", Decimal(3)),
    ("zero", "0", Decimal(0)),
    ("negative-zero", "-0", Decimal(0)),
    ("leading-zeros", "007", Decimal(7)),
    ("explicit-plus", "+2", Decimal(2)),
    ("negative", "-2", Decimal(-2)),
    ("decimal", "1.5", Decimal("1.5")),
    ("leading-dot", ".5", Decimal("0.5")),
    ("trailing-dot", "5.", Decimal(5)),
    ("nano", "5n", Decimal("0.000000005")),
    ("micro", "5u", Decimal("0.000005")),
    ("milli", "500m", Decimal("0.5")),
    ("milli-whole", "1000m", Decimal(1)),
    ("kilo", "2k", Decimal(2_000)),
    ("mega", "2M", Decimal(2 * 10**6)),
    ("giga", "2G", Decimal(2 * 10**9)),
    ("tera", "2T", Decimal(2 * 10**12)),
    ("peta", "2P", Decimal(2 * 10**15)),
    ("exa", "2E", Decimal(2 * 10**18)),
    ("kibi", "2Ki", Decimal(2 * 2**10)),
    ("mebi", "2Mi", Decimal(2 * 2**20)),
    ("gibi", "2Gi", Decimal(2 * 2**30)),
    ("tebi", "2Ti", Decimal(2 * 2**40)),
    ("pebi", "2Pi", Decimal(2 * 2**50)),
    ("exbi", "2Ei", Decimal(2 * 2**60)),
    ("fractional-binary", "1.5Ki", Decimal(1536)),
    ("exponent-lower", "1e3", Decimal(1000)),
    ("exponent-upper", "1E3", Decimal(1000)),
    ("exponent-plus", "1e+3", Decimal(1000)),
    ("exponent-negative", "15e-1", Decimal("1.5")),
    ("exponent-on-decimal", "1.5e2", Decimal(150)),
    ("below-nano-rounds-up", "1e-10", Decimal("1e-9")),
    ("below-nano-fraction-rounds-up", "1.0000000001", Decimal("1.000000001")),
    ("below-nano-negative-rounds-away", "-1e-10", Decimal("-1e-9")),
    ("int", 4, Decimal(4)),
    ("float", 0.1, Decimal("0.1")),
    ("float-whole", 2.0, Decimal(2)),
    ("float-below-nano", 1e-12, Decimal("1e-9")),
    ("longest-allowed", "1" * 64, Decimal("1" * 64)),
    ("huge-binary-is-exact", "9" * 62 + "Ei", Decimal(int("9" * 62) * 2**60)),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parses_kubernetes_quantities(text: str | int | float, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


MALFORMED = [
    ("empty", "", "empty string"),
    ("letters", "abc", "expected a number"),
    ("two-dots", "1.2.3", "malformed number"),
    ("double-minus", "--1", "expected a number"),
    ("sign-only", "-", "expected a number"),
    ("dot-only", ".", "expected a number"),
    ("unknown-binary-suffix", "1Xi", "unknown suffix 'Xi'"),
    ("uppercase-kilo", "1K", "unknown suffix 'K'"),
    ("lowercase-kibi", "1ki", "unknown suffix 'ki'"),
    ("two-suffixes", "1kM", "unknown suffix 'kM'"),
    ("bare-exponent", "1e", "unknown suffix 'e'"),
    ("suffix-then-digits", "1m3", "unknown suffix 'm3'"),
    ("leading-space", " 1", "expected a number"),
    ("trailing-space", "1 ", "unknown suffix ' '"),
    ("underscore", "1_000", "unknown suffix '_000'"),
    ("non-ascii-digit", "\u0661", "expected a number"),
    ("nan-string", "NaN", "expected a number"),
    ("inf-string", "inf", "expected a number"),
    ("exponent-too-large", "1e1001", "exponent out of range"),
    ("too-long", "1" * 65, "longer than 64 characters (65)"),
    ("nan-float", float("nan"), "not a finite number"),
    ("inf-float", float("inf"), "not a finite number"),
    ("bool", True, "a boolean is not a quantity"),
    ("none", None, "expected a string or a number, got NoneType"),
    ("list", [1], "expected a string or a number, got list"),
]


@pytest.mark.parametrize(
    ("value", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_quantity_says_what_and_why(value: object, reason: str) -> None:
    with pytest.raises(QuantityError, match=r"^invalid quantity ") as caught:
        parse_quantity(value)  # type: ignore[arg-type]  # wrong types are part of the test
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


HOSTILE = [
    ("long-string", "9" * 10_000, "longer than 64 characters (10000)"),
    # repr() of an int this big raises ValueError in Python 3.11+; the message must not.
    ("int-beyond-repr-limit", 10**5000, "<int of 16610 bits>"),
]


@pytest.mark.parametrize(("value", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_value_is_not_echoed_in_full(value: str | int, reason: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_count(value)
    assert reason in str(caught.value)
    assert len(str(caught.value)) < 200
    assert caught.value.value == value  # the original stays available to the caller


COUNTS = [
    ("one", "1", 1),
    ("zero", "0", 0),
    ("eight", "8", 8),
    ("milli-whole", "2000m", 2),
    ("kilo", "1k", 1000),
    ("exponent", "1e2", 100),
    ("decimal-whole", "2.0", 2),
    ("int", 3, 3),
    ("float-whole", 4.0, 4),
    ("at-the-limit", str(MAX_COUNT), MAX_COUNT),
    ("mega-at-the-limit", "1M", MAX_COUNT),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_counts_are_whole_numbers(value: str | int | float, expected: int) -> None:
    count = parse_count(value)
    assert count == expected
    assert type(count) is int


BAD_COUNTS = [
    ("half", "0.5", "must be whole numbers"),
    ("milli", "500m", "must be whole numbers"),
    ("below-nano", "1e-10", "must be whole numbers"),
    ("float-fraction", 1.5, "must be whole numbers"),
    ("negative", "-1", "cannot be negative"),
    ("negative-int", -1, "cannot be negative"),
    ("over-the-limit", str(MAX_COUNT + 1), "absurd"),
    ("mega", "2M", "absurd"),
    ("huge-int", 10**30, "absurd"),
    ("huge-exponent", "1e1000", "absurd"),
    ("exbi", "1Ei", "absurd"),
    ("malformed", "abc", "expected a number"),
    ("bool", False, "a boolean is not a quantity"),
]


@pytest.mark.parametrize(
    ("value", "reason"), [c[1:] for c in BAD_COUNTS], ids=[c[0] for c in BAD_COUNTS]
)
def test_bad_gpu_count_says_why(value: str | int | float, reason: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_count(value)
    assert reason in str(caught.value)
    assert repr(value) in str(caught.value)
