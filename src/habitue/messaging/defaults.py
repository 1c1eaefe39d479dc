"""What a program sends before it has written its own templates.

The `welcome`, `tier_up`, `points_expiring`, `birthday` and `reward_available` emails exist
in English, French and Danish for every program; a template the program saves for the same
code and channel replaces it. The sign-in link email is not a
program template: it carries the link, which no template variable holds.
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

`points_earned` has none: it is off until the program writes a template for it."""

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
