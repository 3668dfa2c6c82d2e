"""What both order webhooks need before they read a payload: the signature check.

Shopify (``X-Shopify-Hmac-Sha256``) and WooCommerce (``X-WC-Webhook-Signature``)
sign the same way: base64(HMAC-SHA256(secret, raw body)). The platform-specific
part (WooCommerce decodes HTML entities in its secret first) stays with the
caller, which passes the secrets as the key text to use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

# A base64 SHA-256 digest is 44 characters; anything much longer is not a signature.
_MAX_SIGNATURE_CHARS = 128


def _decode_signature(signature: str | None) -> bytes | None:
    if not signature:
        return None
    text = signature.strip()
    if not text or len(text) > _MAX_SIGNATURE_CHARS:
        return None
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == hashlib.sha256().digest_size else None


def verify_hmac_base64(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """True if ``signature`` is base64(HMAC-SHA256(secret, body)) for one of ``secrets``.

    Computed over the raw bytes, compared in constant time. Several secrets are
    accepted (rotation, hand-made webhooks signed with another key); every one is
    tried, so the time taken does not say which matched. An empty body, a missing
    or malformed signature, or no secret at all is never valid.
    """
    expected = _decode_signature(signature)
    if expected is None or not body:
        return False
    valid = False
    for secret in secrets:
        if not secret:
            continue
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        valid |= hmac.compare_digest(digest, expected)
    return valid
