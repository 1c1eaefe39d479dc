"""Errors of the messaging room."""

from __future__ import annotations

from habitue.errors import HabitueError, NotFound


class TemplateNotFound(NotFound):
    type = "message-template-not-found"
    title = "Message template not found"


class InvalidTemplate(HabitueError):
    """A template that does not compile, names an unknown variable or cannot be rendered.

    `reason` says which check failed, for pages that explain it in the reader's language:
    `syntax`, `unknown-variable` (`names`), `not-allowed`, `too-large`, `sandbox`, `render`,
    `subject-required`, `no-subject`, `empty`, `too-long`, `channel`; `line` is the line of
    the template it concerns, when known.
    """

    status = 422
    type = "invalid-message-template"
    title = "Invalid message template"

    def __init__(
        self,
        field: str,
        message: str,
        *,
        reason: str = "invalid",
        line: int | None = None,
        names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.field = field
        self.message = message
        self.reason = reason
        self.line = line
        self.names = names


class WebhookNotFound(NotFound):
    type = "webhook-not-found"
    title = "Webhook endpoint not found"


class DeliveryNotFound(NotFound):
    type = "delivery-not-found"
    title = "Delivery not found"


class InvalidUnsubscribeLink(NotFound):
    type = "invalid-unsubscribe-link"
    title = "Unknown unsubscribe link"


class NewsletterNotFound(NotFound):
    type = "newsletter-not-found"
    title = "Newsletter not found"


class NewsletterExists(HabitueError):
    status = 409
    type = "newsletter-exists"
    title = "Newsletter exists"


class NewsletterNotScheduled(HabitueError):
    """Sending or canceling a newsletter that was sent or canceled already."""

    status = 409
    type = "newsletter-not-scheduled"
    title = "Newsletter not scheduled"


class WebhookEventNotFound(NotFound):
    type = "webhook-event-not-found"
    title = "Webhook event type not found"
