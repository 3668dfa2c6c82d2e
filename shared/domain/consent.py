"""Consent signals and the decision whether an event may be sent.

Pure: no I/O. The collect endpoint stores a :class:`ConsentSnapshot` with the
click context; the webhooks read it back and call :func:`decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.config import ConsentPolicy

GrantState = Literal["granted", "denied"]


class ConsentSnapshot(BaseModel):
    """What the page said about consent. Every signal is optional."""

    model_config = ConfigDict(extra="forbid")

    # A plain yes/no from a site's own banner.
    granted: bool | None = None
    # Google Consent Mode v2.
    ad_storage: GrantState | None = None
    ad_user_data: GrantState | None = None
    ad_personalization: GrantState | None = None
    # Shopify Customer Privacy API.
    marketing_allowed: bool | None = None
    sale_of_data_allowed: bool | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def explicitly_denied(self) -> bool:
        return (
            self.granted is False
            or self.ad_storage == "denied"
            or self.ad_user_data == "denied"
            or self.marketing_allowed is False
        )

    def explicitly_granted(self) -> bool:
        if self.explicitly_denied():
            return False
        # Consent Mode: storing the click id needs ad_storage, sending it
        # with user data to an ad platform needs ad_user_data.
        consent_mode = self.ad_storage == "granted" and self.ad_user_data == "granted"
        return bool(self.granted) or bool(self.marketing_allowed) or consent_mode


@dataclass(frozen=True)
class ConsentDecision:
    send: bool
    limited_data_use: bool
    # "granted", "policy_opt_out", "denied", "no_consent" (opt-in without a grant)
    reason: str

    def describe(self) -> str:
        """The decision as logs and answers state it: a sale-of-data opt-out is no plain grant."""
        if self.limited_data_use:
            return f"{self.reason}, with limited_data_use (sale or sharing of data opted out)"
        return self.reason


def decide(snapshot: ConsentSnapshot | None, policy: ConsentPolicy) -> ConsentDecision:
    """Opt-in sends only on an explicit grant; opt-out sends unless denied.

    A sale-of-data opt-out (Shopify ``saleOfDataAllowed: false``, or
    ``ad_personalization: denied``) still sends, flagged ``limited_data_use``.
    """
    limited = snapshot is not None and (
        snapshot.sale_of_data_allowed is False or snapshot.ad_personalization == "denied"
    )
    if snapshot is not None and snapshot.explicitly_denied():
        return ConsentDecision(False, False, "denied")
    if snapshot is not None and snapshot.explicitly_granted():
        return ConsentDecision(True, limited, "granted")
    if policy == "opt-out":
        return ConsentDecision(True, limited, "policy_opt_out")
    return ConsentDecision(False, False, "no_consent")
