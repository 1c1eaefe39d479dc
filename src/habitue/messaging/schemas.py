"""API shapes of the messaging room's templates."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from habitue.bounds import StrictModel
from habitue.timestamps import UtcDatetime

Channel = Literal["email", "sms", "push"]
Locale = Literal["en", "fr", "da"]
CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class Strict(StrictModel):
    """A request body (see habitue.bounds: unknown fields and control characters refused)."""


class TemplateWrite(Strict):
    subject: str | None = Field(
        default=None, max_length=500, description="required for email, the title of a push"
    )
    body: str = Field(min_length=1, max_length=100_000, description="HTML for email")


class TemplateRead(BaseModel):
    code: str
    channel: Channel
    locale: Locale
    subject: str | None
    body: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PreviewRequest(Strict):
    """Render a template for a member, or for sample data; `subject`/`body` preview a draft."""

    channel: Channel = "email"
    locale: Locale | None = Field(
        default=None, description="default: the member's language (then English)"
    )
    member_id: str | None = Field(default=None, max_length=64)
    sample: dict[str, str | int] | None = Field(
        default=None, description="values of the variables, instead of a member's"
    )
    subject: str | None = Field(default=None, max_length=500)
    body: str | None = Field(default=None, min_length=1, max_length=100_000)


class PreviewRead(BaseModel):
    code: str
    channel: Channel
    locale: Locale
    """The language of the template that was rendered (after fallback)."""
    subject: str | None
    body: str
    member_id: str | None
    variables: dict[str, str]


class WebhookCreate(StrictModel):
    """A webhook endpoint: its URL, the event types it wants (or `["*"]`), a description."""

    url: str = Field(max_length=2000)
    events: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)


class WebhookUpdate(StrictModel):
    """A change to a webhook endpoint (only the fields given)."""

    url: str | None = Field(default=None, max_length=2000)
    events: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class NewsletterCreate(StrictModel):
    """A newsletter: the template it sends to a segment's members, when, and the hold-out."""

    code: str = Field(
        pattern=CODE_PATTERN,
        description="unique in the program; also the code "
        "of the campaign that measures it when there is a hold-out",
    )
    segment: str = Field(max_length=64, description="the dynamic segment's code")
    template: str = Field(pattern=CODE_PATTERN, description="the message template's code")
    holdout_share: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of the segment held out (0: none)"
    )
    send_at: UtcDatetime | None = Field(default=None, description="absent: sent now")


class MessageSettings(StrictModel):
    """A program's message settings; null (or left out): the server's default."""

    weekly_cap: int | None = Field(
        default=None, ge=0, le=1000, description="messages per member and channel per 7 days"
    )
    quiet_hours: str | None = Field(
        default=None,
        max_length=11,
        description="HH:MM-HH:MM in the program's time zone; SMS and push wait for its end",
    )
    points_expiring_days: int | None = Field(
        default=None, ge=0, le=366, description="days before a lot expires (0: no message)"
    )
