"""Kubernetes resource quantities ("500m", "16Gi", "1e3"), parsed exactly.

Used to compare quotas with the requests of the jobs that must fit in them, before anything
reaches the API server (which would reject a malformed quantity only at apply time).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["QuantityError", "parse_quantity"]

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
# The grammar from k8s.io/apimachinery/pkg/api/resource: a signed decimal, then a binary SI
# suffix, a decimal SI suffix, or a decimal exponent.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Decimal:
    """Return the quantity's value in base units (cores, bytes, items).

    >>> parse_quantity("500m")
    Decimal('0.500')
    >>> parse_quantity("2Gi") == 2 * 1024**3
    True
    """
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (examples: '500m', '2', '16Gi', '1e3')")
    suffix = match.group("suffix") or ""
    try:
        number = Decimal(match.group("number"))
        if suffix[:1] in ("e", "E"):
            return number * (Decimal(10) ** int(suffix[1:]))
        return number * _SUFFIXES[suffix]
    except (InvalidOperation, KeyError) as err:  # pragma: no cover - the regex admits only these
        raise QuantityError(f"{text!r} is not a Kubernetes quantity") from err
