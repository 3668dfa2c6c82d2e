"""Which join keys a browser may write a click context under (see docs/collect.md, "Threat model").

Anyone can post to collect: the Origin header is forgeable outside a browser
and the collect key is public. So a join key from a request is only trusted
when holding it proves who the request speaks for:

- a **secret only the shopper's browser holds**: a Shopify cart or checkout
  token, a WooCommerce order key, our own random session id. Each must have
  the shape of the random value the platform (or collect.js) generates; a
  short or low-variety value is something a third party could guess, so it is
  ignored;
- or a **customer id signed by the store's server**: HMAC-SHA256 of the id
  (its decimal text) under the pixel's ``COLLECT_SIGNING_SECRET``, rendered
  into the page (Shopify Liquid ``{{ customer.id | hmac_sha256: '...' }}``,
  WooCommerce ``hash_hmac('sha256', ...)``). A bare customer id is guessable
  (WooCommerce's are small sequential integers), so without a valid signature
  it is not a join key.

A key that does not qualify is left out with a reason, never a 4xx: the
request's events and its other keys still count. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from shared.sources import CUSTOMER, Shape, registry

__all__ = ["SHAPES", "SIGNATURE_FIELD", "BoundKeys", "IgnoredKey", "Shape"]
__all__ += ["bind", "sign_customer_id", "signature_matches"]

SIGNATURE_FIELD = "customer_id_signature"
_HEX_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")

# Each source's join-key kinds and the shape of their random values, from its definition (shared.sources).
SHAPES: dict[str, Shape] = registry.SHAPES


@dataclass(frozen=True)
class IgnoredKey:
    """A join key left out of the context; ``field`` and ``reason`` are safe to echo (no value)."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class BoundKeys:
    """The join keys a request may write under, and why the others were left out."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[IgnoredKey] = field(default_factory=list)
    # The posted customer id, signed or not: only tags the context for customers/redact, never a join.
    customer_id: str | None = None


def sign_customer_id(customer_id: str, secret: str) -> str:
    """What the store's server renders next to the id (Liquid hmac_sha256, PHP hash_hmac): lowercase hex."""
    return hmac.new(secret.encode(), str(customer_id).encode(), hashlib.sha256).hexdigest()


def signature_matches(customer_id: str, signature: str, secrets: Sequence[SecretStr]) -> bool:
    """Constant time per secret, and every secret is tried (no early exit says which one matched)."""
    if not _HEX_SIGNATURE.match(signature):
        return False
    given = signature.lower().encode()
    matched = False
    for secret in secrets:
        expected = sign_customer_id(customer_id, secret.get_secret_value()).encode()
        matched |= hmac.compare_digest(given, expected)
    return matched


def bind(pairs: Sequence[tuple[str, str]], signature: str | None, secrets: Sequence[SecretStr]) -> BoundKeys:
    """Keep the (kind, value) pairs this request proves it holds; say why each other one is left out."""
    kept: list[tuple[str, str]] = []
    ignored: list[IgnoredKey] = []
    customer_id: str | None = None
    for kind, value in pairs:
        where = f"context.join_keys.{kind}"
        if kind == CUSTOMER.name:
            customer_id = value
            reason = _customer_problem(value, signature, secrets)
            if reason:
                ignored.append(IgnoredKey(where, reason))
            else:
                kept.append((kind, value))
            continue
        shape = SHAPES.get(kind)
        if shape is None or not shape.fits(value):
            what = shape.what if shape else "a known join key"
            ignored.append(IgnoredKey(where, f"not {what}, so it could be guessed; not stored under it"))
            continue
        kept.append((kind, value))
    if signature is not None and customer_id is None:
        ignored.append(IgnoredKey(f"context.join_keys.{SIGNATURE_FIELD}", "sent without customer_id"))
    return BoundKeys(kept, ignored, customer_id)


def _customer_problem(customer_id: str, signature: str | None, secrets: Sequence[SecretStr]) -> str | None:
    if signature is None:
        return (
            f"a customer id can be guessed: it is a join key only with {SIGNATURE_FIELD}, "
            "HMAC-SHA256 of the id under COLLECT_SIGNING_SECRET made by the store's server (docs/collect.md)"
        )
    if not secrets:
        return f"{SIGNATURE_FIELD} cannot be checked: COLLECT_SIGNING_SECRET is not set for this pixel"
    if not signature_matches(customer_id, signature, secrets):
        return f"{SIGNATURE_FIELD} is not HMAC-SHA256 of customer_id under COLLECT_SIGNING_SECRET"
    return None
