"""Add-to-wallet links of the portal's card page, from the `HABITUE_WALLET_*_URL` templates."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from habitue.programs.schemas import Branding
from habitue.settings import Settings
from habitue.web.i18n import _l


@dataclass(frozen=True, slots=True)
class WalletLink:
    """One link to show: which wallet, its label (to translate) and its address."""

    wallet: str
    label: str
    url: str


WALLETS = (
    ("apple", "wallet_apple_url", _l("Add to Apple Wallet")),
    ("google", "wallet_google_url", _l("Save to Google Wallet")),
)


def fill(
    template: str,
    *,
    program: str,
    card_number: str,
    member_id: str,
    branding: Branding | None = None,
    public_url: str = "",
) -> str:
    """The template with its placeholders replaced by the URL-encoded values.

    Plain replacement, not `str.format`: other braces in the template stay as they are.
    `{primary_color}`, `{background_color}` (`#rrggbb`) and `{logo_url}` (empty without a
    logo) carry the program's look to the pass issuer.
    """
    look = branding or Branding()
    values = {
        "program": program,
        "card_number": card_number,
        "member_id": member_id,
        "primary_color": look.primary_color,
        "background_color": look.background_color,
        "logo_url": f"{public_url}/app/{program}/logo" if look.logo else "",
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe=""))
    return template


def wallet_links(
    settings: Settings,
    *,
    program: str,
    card_number: str,
    member_id: str,
    branding: Branding | None = None,
) -> list[WalletLink]:
    """The configured wallets' links for this card (none when no template is set)."""
    links = []
    for wallet, setting, label in WALLETS:
        template: str | None = getattr(settings, setting)
        if template:
            url = fill(
                template,
                program=program,
                card_number=card_number,
                member_id=member_id,
                branding=branding,
                public_url=settings.base_url,
            )
            links.append(WalletLink(wallet, label, url))
    return links
