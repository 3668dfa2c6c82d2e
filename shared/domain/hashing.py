"""Normalization and SHA-256 hashing of TikTok advanced-matching fields.

The rules follow TikTok's Events API 2.0 advanced-matching rules as TikTok's
own server-side GTM template (github.com/tiktok/gtm-template-eapi) and
Segment's tiktok-conversions destination apply them. Every public
function returns ``None`` for a value that is empty or unusable: an empty value
is dropped, never hashed (sha256("") in a payload is always a bug).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable

import phonenumbers

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_WHITESPACE = re.compile(r"\s+")
# A deliberately loose check: we only drop what cannot be an address at all
# (placeholders such as "example string"); TikTok does the real matching.
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_US_ZIP = re.compile(r"^(\d{5})-?\d{4}$")


def is_sha256_hex(value: str) -> bool:
    """True when ``value`` already looks like a SHA-256 hex digest."""
    return bool(_HEX64.match(value))


def sha256_hex(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def customer_key(customer_id: str) -> str:
    """What a click context records of the store customer it belongs to: collect writes it, a redaction finds it.

    A digest, not the id, so a context does not name the customer outright.
    """
    return sha256_hex(customer_id)


def _hash_or_pass(value: str | None, normalize: Callable[[str], str | None]) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if is_sha256_hex(text):
        return text.lower()
    normalized = normalize(text)
    if not normalized:
        return None
    return sha256_hex(normalized)


def normalize_email(value: str) -> str | None:
    email = value.strip().lower()
    return email if _EMAIL_SHAPE.match(email) else None


def normalize_phone(value: str, regions: Iterable[str | None] = ()) -> str | None:
    """E.164 (``+`` and digits), parsed with the first region that yields a valid number.

    TikTok's help text asks for numbers with country code 86 without the code.
    Unparseable or invalid numbers are dropped, never guessed.
    """
    text = value.strip()
    if not text:
        return None
    candidates: list[str | None] = [None] if text.startswith("+") or text.startswith("00") else []
    candidates += [r.upper() for r in regions if r]
    if text.startswith("00"):
        text = "+" + text[2:]
    for region in candidates or [None]:
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(parsed):
            continue
        if parsed.country_code == 86:
            return str(parsed.national_number)
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def _strip_accents_keep_letters(value: str) -> str:
    # Names keep their letters in any script ("José" -> "josé"): TikTok's pixel
    # hashes the lowercased UTF-8 text, so we must not transliterate.
    return "".join(ch for ch in unicodedata.normalize("NFC", value.lower()) if ch.isalnum())


def normalize_name(value: str) -> str | None:
    return _strip_accents_keep_letters(value) or None


def normalize_zip(value: str) -> str | None:
    text = _WHITESPACE.sub("", value.strip().lower())
    match = _US_ZIP.match(text)
    if match:
        return match.group(1)
    return text or None


def normalize_location(value: str | None) -> str | None:
    """city and state: lowercase, letters and digits only, not hashed."""
    if value is None:
        return None
    text = _strip_accents_keep_letters(str(value))
    return text or None


def normalize_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2, lowercase, not hashed; anything else is dropped."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text if re.fullmatch(r"[a-z]{2}", text) else None


def hash_email(value: str | None) -> str | None:
    return _hash_or_pass(value, normalize_email)


def hash_phone(value: str | None, regions: Iterable[str | None] = ()) -> str | None:
    regions = list(regions)
    return _hash_or_pass(value, lambda text: normalize_phone(text, regions))


def hash_external_id(value: str | int | None) -> str | None:
    # Trim only, case kept: what TikTok's pixel and official server template do.
    return _hash_or_pass(None if value is None else str(value), lambda text: text)


def hash_name(value: str | None) -> str | None:
    return _hash_or_pass(value, normalize_name)


def hash_zip(value: str | None) -> str | None:
    return _hash_or_pass(value, normalize_zip)


def unique(values: Iterable[str | None]) -> list[str]:
    """Drop Nones and repeats, keep first-seen order."""
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)
