"""Kubernetes resource quantities, parsed the way k8s.io/apimachinery `resource.Quantity` does.

Pure: no I/O. Grammar: an optional sign, digits with an optional fraction (at least one digit),
then one optional suffix: decimal SI (`n u m k M G T P E`), binary SI (`Ki Mi Gi Ti Pi Ei`) or
a decimal exponent (`e3`, `E-2`). Like `ParseQuantity`, a non-zero value finer than a nano is
rounded up (away from zero) to 1n: whoever asks for a sliver of a resource gets some.

We are stricter than `ParseQuantity` where it is lenient by accident: it reads `"-"`, `"+"`
and `"."` as zero; we refuse them. The API server returns quantities in canonical form, so such
strings never reach us from a real cluster; if one appears it is a bug we want to hear about,
not a zero in a total.
"""

from __future__ import annotations

import decimal
import math
import re
from decimal import Decimal
from typing import Final

MAX_QUANTITY_CHARS: Final = 64
"""Longer strings are refused unread: no real quantity needs them, and it bounds the work."""

MAX_SHOWN_CHARS: Final = 80
"""Error messages quote at most this much of the offending value."""

MAX_EXPONENT: Final = 1000
"""Bound on `e<N>`: keeps Decimal arithmetic exact and cheap; anything near it is absurd."""

MAX_COUNT: Final = 10**6
"""More GPUs than this in one container is a bug or an attack, never a real request."""

_NUMBER: Final = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.DOTALL)
_EXPONENT: Final = re.compile(r"[eE]([+-]?[0-9]+)")

_DECIMAL_SUFFIXES: Final[dict[str, int]] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: Final[dict[str, int]] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_SUFFIXES_HELP: Final = "n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<N>"

_NANO: Final = Decimal("1e-9")
_ZERO: Final = Decimal(0)
# Enough digits that no operation here ever rounds: at most 64 input digits times 2**60.
_EXACT: Final = decimal.Context(
    prec=200,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)


class QuantityError(ValueError):
    """A resource quantity that Kubernetes would not accept, or that no real pod would carry."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"invalid quantity {_show(value)}: {reason}")
        self.value = value
        self.reason = reason


def _show(value: object) -> str:
    """A short repr: a hostile value must not flood the log or fail to print at all."""
    if type(value) is int and value.bit_length() > 256:  # repr() refuses > 4300 digits
        return f"<int of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the exact value of a Kubernetes quantity (`"1.5"`, `"500m"`, `"2Gi"`, `"1e3"`).

    Ints and finite floats are accepted because hand-written manifests (YAML `gpu: 1`) carry
    them; bool is refused because `True` is an int to Python but never a quantity.
    """
    if isinstance(value, bool):
        raise QuantityError(value, "a boolean is not a quantity")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return _from_float(value)
    if isinstance(value, str):
        return _from_string(value)
    raise QuantityError(value, f"expected a string or a number, got {type(value).__name__}")


def parse_count(value: str | int | float) -> int:
    """Return an extended-resource quantity (a GPU count) as a non-negative whole number.

    The API server only admits whole numbers for extended resources, so `"0.5"` or `"500m"`
    means a hand-built object or a bug; refusing it beats rounding it into a total.
    """
    # Fast path: nearly every GPU quantity the API server returns is a few plain digits.
    if type(value) is str and len(value) <= 7 and value.isascii() and value.isdigit():
        return _check_count(value, int(value))
    if type(value) is int:
        return _check_count(value, value)
    amount = parse_quantity(value)
    if amount != amount.to_integral_value():
        raise QuantityError(value, "extended resources (GPUs) must be whole numbers")
    if amount > MAX_COUNT:  # before int(): 1e1000 must not become a 1,000-digit int
        raise QuantityError(value, f"absurd: more than {MAX_COUNT} in one container")
    return _check_count(value, int(amount))


def _check_count(value: object, count: int) -> int:
    if count < 0:
        raise QuantityError(value, "extended resources (GPUs) cannot be negative")
    if count > MAX_COUNT:
        raise QuantityError(value, f"absurd: more than {MAX_COUNT} in one container")
    return count


def _from_float(value: float) -> Decimal:
    if not math.isfinite(value):
        raise QuantityError(value, "not a finite number")
    # repr() gives the shortest string that round-trips, so 0.1 reads as 0.1, not 0.1000...0555.
    return _round_to_nano(Decimal(repr(value)))


def _from_string(text: str) -> Decimal:
    if not text:
        raise QuantityError(text, "empty string")
    if len(text) > MAX_QUANTITY_CHARS:
        raise QuantityError(text, f"longer than {MAX_QUANTITY_CHARS} characters ({len(text)})")
    match = _NUMBER.fullmatch(text)
    if match is None:  # unreachable: every group is optional, so any string matches
        raise QuantityError(text, "malformed number")
    sign, whole, fraction, suffix = match.groups()
    if not whole and not fraction:
        raise QuantityError(text, "expected a number such as 1, 1.5, 500m, 2Gi or 1e3")
    digits = f"{sign}{whole or '0'}.{fraction}" if fraction else f"{sign}{whole}"
    return _round_to_nano(_apply_suffix(text, Decimal(digits), suffix))


def _apply_suffix(text: str, amount: Decimal, suffix: str) -> Decimal:
    exponent = _DECIMAL_SUFFIXES.get(suffix)
    if exponent is None:
        multiplier = _BINARY_SUFFIXES.get(suffix)
        if multiplier is not None:
            return _EXACT.multiply(amount, multiplier)
        exponent = _parse_exponent(text, suffix)
    return amount.scaleb(exponent, _EXACT) if exponent else amount


def _parse_exponent(text: str, suffix: str) -> int:
    match = _EXPONENT.fullmatch(suffix)
    if match is None:
        if suffix[0] in "0123456789.+-":
            raise QuantityError(text, "malformed number")
        raise QuantityError(text, f"unknown suffix {suffix!r} (expected {_SUFFIXES_HELP})")
    exponent = int(match.group(1))  # at most 62 digits: cheap
    if abs(exponent) > MAX_EXPONENT:
        raise QuantityError(text, f"exponent out of range (at most +-{MAX_EXPONENT})")
    return exponent


def _round_to_nano(amount: Decimal) -> Decimal:
    if not amount:
        return _ZERO  # also folds "-0" into 0
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -9:
        return amount
    return amount.quantize(_NANO, rounding=decimal.ROUND_UP, context=_EXACT)
