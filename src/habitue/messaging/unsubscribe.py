"""One-click unsubscribe links: signed with `HABITUE_HMAC_KEY`, one per member and program.

The link is `{HABITUE_PUBLIC_URL}/v1/programs/{program}/unsubscribe/{member_id}.{mac}`; a
`POST` to it (RFC 8058: `List-Unsubscribe=One-Click`) withdraws the member's email consent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from habitue.settings import Settings


def _mac(hmac_key: str, program: str, member_id: str) -> str:
    digest = hmac.new(
        hmac_key.encode(), f"habitue.unsubscribe:{program}:{member_id}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token(hmac_key: str, program: str, member_id: str) -> str:
    return f"{member_id}.{_mac(hmac_key, program, member_id)}"


def member_of(hmac_key: str, program: str, value: str) -> str | None:
    """The member id a token was made for, or None when the token is not genuine."""
    member_id, _, mac = value.rpartition(".")
    if not member_id or not mac:
        return None
    if not hmac.compare_digest(mac, _mac(hmac_key, program, member_id)):
        return None
    return member_id


def url(settings: Settings, program: str, member_id: str) -> str:
    return (
        f"{settings.base_url}/v1/programs/{program}/unsubscribe/"
        f"{token(settings.hmac_key, program, member_id)}"
    )
