"""What a program sends before it has written its own templates.

The `welcome`, `tier_up`, `points_expiring`, `birthday` and `reward_available` emails, text
messages and push notifications exist in English, French and Danish for every program; a
template the program saves for the same code and channel replaces them. `points_earned` is off
until the program saves a template for it (the console's editor starts from `STARTERS`).
The sign-in link email is not a program template: it carries the link, which no template
variable holds.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

EMAIL_TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "welcome": {
        "en": (
            "Welcome to {{ program_name }}",
            "<p>Hello {{ first_name }},</p>\n"
            "<p>Welcome to {{ program_name }}! Your card number is {{ card_number }}.</p>\n"
            "<p>You have {{ points }} {{ points_name }}.</p>",
        ),
        "fr": (
            "Bienvenue chez {{ program_name }}",
            "<p>Bonjour {{ first_name }},</p>\n"
            "<p>Bienvenue chez {{ program_name }} ! Votre numéro de carte est "
            "{{ card_number }}.</p>\n"
            "<p>Vous avez {{ points }} {{ points_name }}.</p>",
        ),
        "da": (
            "Velkommen til {{ program_name }}",
            "<p>Hej {{ first_name }},</p>\n"
            "<p>Velkommen til {{ program_name }}! Dit kortnummer er {{ card_number }}.</p>\n"
            "<p>Du har {{ points }} {{ points_name }}.</p>",
        ),
    },
    "tier_up": {
        "en": (
            "You are now {{ tier }}",
            "<p>Hello {{ first_name }},</p>\n"
            "<p>Congratulations: you are now {{ tier }} at {{ program_name }}.</p>",
        ),
        "fr": (
            "Vous êtes maintenant {{ tier }}",
            "<p>Bonjour {{ first_name }},</p>\n"
            "<p>Félicitations : vous êtes maintenant {{ tier }} chez {{ program_name }}.</p>",
        ),
        "da": (
            "Du er nu {{ tier }}",
            "<p>Hej {{ first_name }},</p>\n"
            "<p>Tillykke: du er nu {{ tier }} hos {{ program_name }}.</p>",
        ),
    },
    "points_expiring": {
        "en": (
            "Your {{ points_name }} expire soon",
            "<p>Hello {{ first_name }},</p>\n"
            "<p>{{ expiring_points }} {{ points_name }} expire on {{ expiring_on }}. "
            "Use them before then!</p>",
        ),
        "fr": (
            "Vos {{ points_name }} expirent bientôt",
            "<p>Bonjour {{ first_name }},</p>\n"
            "<p>{{ expiring_points }} {{ points_name }} expirent le {{ expiring_on }}. "
            "Utilisez-les avant !</p>",
        ),
        "da": (
            "Dine {{ points_name }} udløber snart",
            "<p>Hej {{ first_name }},</p>\n"
            "<p>{{ expiring_points }} {{ points_name }} udløber den {{ expiring_on }}. "
            "Brug dem inden da!</p>",
        ),
    },
    "birthday": {
        "en": (
            "Happy birthday, {{ first_name }}!",
            "<p>Happy birthday from everyone at {{ program_name }}!</p>",
        ),
        "fr": (
            "Joyeux anniversaire, {{ first_name }} !",
            "<p>Joyeux anniversaire de la part de toute l'équipe de {{ program_name }} !</p>",
        ),
        "da": (
            "Tillykke med fødselsdagen, {{ first_name }}!",
            "<p>Tillykke med fødselsdagen fra alle os hos {{ program_name }}!</p>",
        ),
    },
    "reward_available": {
        "en": (
            "A reward is waiting for you",
            "<p>Hello {{ first_name }},</p>\n"
            "<p>You have {{ points }} {{ points_name }}: enough for a reward at "
            "{{ program_name }}.</p>",
        ),
        "fr": (
            "Une récompense vous attend",
            "<p>Bonjour {{ first_name }},</p>\n"
            "<p>Vous avez {{ points }} {{ points_name }} : de quoi choisir une récompense chez "
            "{{ program_name }}.</p>",
        ),
        "da": (
            "En belønning venter på dig",
            "<p>Hej {{ first_name }},</p>\n"
            "<p>Du har {{ points }} {{ points_name }}: nok til en belønning hos "
            "{{ program_name }}.</p>",
        ),
    },
}
"""code → locale → (subject, HTML body): Jinja templates over `render.VARIABLES`.

`points_earned` is not among them: it is off until the program saves a template for it
(`STARTERS` holds the text its editor starts from)."""

SMS_TEMPLATES: dict[str, dict[str, tuple[str | None, str]]] = {
    "welcome": {
        "en": (None, "Welcome to {{ program_name }}, {{ first_name }}! Card {{ card_number }}."),
        "fr": (None, "Bienvenue chez {{ program_name }}, {{ first_name }} ! "
               "Carte {{ card_number }}."),
        "da": (None, "Velkommen til {{ program_name }}, {{ first_name }}! "
               "Kort {{ card_number }}."),
    },
    "tier_up": {
        "en": (None, "{{ program_name }}: congratulations, you are now {{ tier }}!"),
        "fr": (None, "{{ program_name }} : félicitations, vous êtes maintenant {{ tier }} !"),
        "da": (None, "{{ program_name }}: tillykke, du er nu {{ tier }}!"),
    },
    "points_expiring": {
        "en": (None, "{{ program_name }}: {{ expiring_points }} {{ points_name }} expire on "
               "{{ expiring_on }}. Use them before then!"),
        "fr": (None, "{{ program_name }} : {{ expiring_points }} {{ points_name }} expirent le "
               "{{ expiring_on }}. Utilisez-les avant !"),
        "da": (None, "{{ program_name }}: {{ expiring_points }} {{ points_name }} udløber den "
               "{{ expiring_on }}. Brug dem inden da!"),
    },
    "birthday": {
        "en": (None, "Happy birthday, {{ first_name }}, from {{ program_name }}!"),
        "fr": (None, "Joyeux anniversaire, {{ first_name }}, de la part de {{ program_name }} !"),
        "da": (None, "Tillykke med fødselsdagen, {{ first_name }}, fra {{ program_name }}!"),
    },
    "reward_available": {
        "en": (None, "{{ program_name }}: you have {{ points }} {{ points_name }}, "
               "enough for a reward."),
        "fr": (None, "{{ program_name }} : vous avez {{ points }} {{ points_name }}, "
               "de quoi choisir une récompense."),
        "da": (None, "{{ program_name }}: du har {{ points }} {{ points_name }}, "
               "nok til en belønning."),
    },
}  # fmt: skip
"""code → locale → (no subject, text): the text messages sent before the program writes its own."""

PUSH_TEMPLATES: dict[str, dict[str, tuple[str | None, str]]] = {
    "welcome": {
        "en": ("Welcome to {{ program_name }}", "Your card is ready, {{ first_name }}."),
        "fr": ("Bienvenue chez {{ program_name }}", "Votre carte est prête, {{ first_name }}."),
        "da": ("Velkommen til {{ program_name }}", "Dit kort er klar, {{ first_name }}."),
    },
    "tier_up": {
        "en": ("You are now {{ tier }}", "Congratulations, {{ first_name }}!"),
        "fr": ("Vous êtes maintenant {{ tier }}", "Félicitations, {{ first_name }} !"),
        "da": ("Du er nu {{ tier }}", "Tillykke, {{ first_name }}!"),
    },
    "points_expiring": {
        "en": ("Your {{ points_name }} expire soon",
               "{{ expiring_points }} {{ points_name }} expire on {{ expiring_on }}."),
        "fr": ("Vos {{ points_name }} expirent bientôt",
               "{{ expiring_points }} {{ points_name }} expirent le {{ expiring_on }}."),
        "da": ("Dine {{ points_name }} udløber snart",
               "{{ expiring_points }} {{ points_name }} udløber den {{ expiring_on }}."),
    },
    "birthday": {
        "en": ("Happy birthday, {{ first_name }}!", "From everyone at {{ program_name }}."),
        "fr": ("Joyeux anniversaire, {{ first_name }} !",
               "De la part de toute l'équipe de {{ program_name }}."),
        "da": ("Tillykke med fødselsdagen, {{ first_name }}!",
               "Fra alle os hos {{ program_name }}."),
    },
    "reward_available": {
        "en": ("A reward is waiting for you", "You have {{ points }} {{ points_name }}."),
        "fr": ("Une récompense vous attend", "Vous avez {{ points }} {{ points_name }}."),
        "da": ("En belønning venter på dig", "Du har {{ points }} {{ points_name }}."),
    },
}  # fmt: skip
"""code → locale → (title, text): the push notifications sent before the program writes its own."""

BUILT_IN: dict[str, dict[str, dict[str, tuple[str | None, str]]]] = {
    "email": {code: dict(by_locale) for code, by_locale in EMAIL_TEMPLATES.items()},
    "sms": SMS_TEMPLATES,
    "push": PUSH_TEMPLATES,
}
"""channel → code → locale → (subject, body): what is sent until the program saves its own.

Email's are sent whether or not email is configured (the message is recorded as skipped);
SMS and push ones only by a worker with that channel configured, so that a program without an
SMS provider does not collect a skipped text message for every event."""

STARTERS: dict[str, dict[str, dict[str, tuple[str | None, str]]]] = {
    "email": {
        "points_earned": {
            "en": ("You earned {{ points_name }}",
                   "<p>Hello {{ first_name }},</p>\n"
                   "<p>You now have {{ points }} {{ points_name }} at {{ program_name }}.</p>"),
            "fr": ("Vous avez gagné des {{ points_name }}",
                   "<p>Bonjour {{ first_name }},</p>\n"
                   "<p>Vous avez maintenant {{ points }} {{ points_name }} chez "
                   "{{ program_name }}.</p>"),
            "da": ("Du har optjent {{ points_name }}",
                   "<p>Hej {{ first_name }},</p>\n"
                   "<p>Du har nu {{ points }} {{ points_name }} hos {{ program_name }}.</p>"),
        },
    },
    "sms": {
        "points_earned": {
            "en": (None, "{{ program_name }}: you now have {{ points }} {{ points_name }}."),
            "fr": (None, "{{ program_name }} : vous avez maintenant {{ points }} "
                   "{{ points_name }}."),
            "da": (None, "{{ program_name }}: du har nu {{ points }} {{ points_name }}."),
        },
    },
    "push": {
        "points_earned": {
            "en": ("You earned {{ points_name }}", "You now have {{ points }} {{ points_name }}."),
            "fr": ("Vous avez gagné des {{ points_name }}",
                   "Vous avez maintenant {{ points }} {{ points_name }}."),
            "da": ("Du har optjent {{ points_name }}", "Du har nu {{ points }} {{ points_name }}."),
        },
    },
}  # fmt: skip
"""Texts the console's editor starts from for messages that are off until saved
(`points_earned`): shown and previewed, never sent as they are."""


def built_in(code: str, channel: str) -> dict[str, tuple[str | None, str]]:
    """locale → (subject, body) of the text sent for `code` on `channel` until the program
    saves its own (empty: nothing is sent without a saved template)."""
    return dict(BUILT_IN.get(channel, {}).get(code, {}))


def starter(code: str, channel: str) -> dict[str, tuple[str | None, str]]:
    """locale → (subject, body) the editor shows for a template the program has not saved:
    the built-in text, or the starting text of a message that is off until saved."""
    return built_in(code, channel) or dict(STARTERS.get(channel, {}).get(code, {}))

UNCAPPED = frozenset({"welcome", "sign_in_link"})
"""Messages the weekly frequency cap never holds back."""

SIGN_IN: dict[str, tuple[str, str, str]] = {
    "en": (
        "Your sign-in link for {program}",
        "Use this link to sign in to {program}. It works once, for {minutes} minutes:",
        "If you did not ask for it, ignore this email.",
    ),
    "fr": (
        "Votre lien de connexion à {program}",
        "Utilisez ce lien pour vous connecter à {program}. Il fonctionne une fois, "
        "pendant {minutes} minutes :",
        "Si vous ne l'avez pas demandé, ignorez cet e-mail.",
    ),
    "da": (
        "Dit login-link til {program}",
        "Brug dette link til at logge ind på {program}. Det virker én gang i {minutes} minutter:",
        "Hvis du ikke har bedt om det, kan du se bort fra denne e-mail.",
    ),
}

UNSUBSCRIBE = {
    "en": "Stop receiving these emails",
    "fr": "Ne plus recevoir ces e-mails",
    "da": "Afmeld disse e-mails",
}


def sign_in_email(locale: str, program: str, url: str, minutes: int) -> tuple[str, str, str]:
    """(subject, text, HTML) of the sign-in link email in `locale` (English as fallback)."""
    subject, lead, tail = SIGN_IN.get(locale, SIGN_IN["en"])
    subject = subject.format(program=program)
    lead = lead.format(program=program, minutes=minutes)
    text = f"{lead}\n\n{url}\n\n{tail}\n"
    markup = (
        f"<p>{html.escape(lead)}</p>\n"
        f'<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>\n'
        f"<p>{html.escape(tail)}</p>"
    )
    return subject, text, markup


class _Text(HTMLParser):
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        if tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.href:
            self.parts.append(f" ({self.href})")
            self.href = None
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The text part of an email from its HTML part: tags dropped, links kept in brackets."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
