"""The setup wizard's unit of work: a new program, its look, its first tier ladder and its
welcome email, written in one transaction through the rooms' own services (those the API calls).

The wizard (`web.admin_setup`) writes nothing before its last step: each step is checked when
the person moves on, and the checked values travel in the form. `create` then writes them all
or, when one service refuses, nothing (the caller's `Database.write` rolls the whole back).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.messaging import templates as templates_service
from habitue.messaging.schemas import TemplateWrite
from habitue.programs import service as programs_service
from habitue.programs.schemas import Branding, ProgramCreate
from habitue.programs.service import ProgramInfo
from habitue.tiers import service as tiers_service
from habitue.tiers.schemas import LadderWrite


@dataclass(frozen=True, slots=True)
class Welcome:
    """The `welcome` email a new member gets, in one language (the others keep the built-in)."""

    locale: str
    template: TemplateWrite


@dataclass(frozen=True, slots=True)
class ProgramSetup:
    """Everything the wizard asks, checked by the same schemas as the API's bodies."""

    program: ProgramCreate
    branding: Branding
    ladder: LadderWrite | None
    welcome: Welcome | None


def welcome_html(text: str) -> str:
    """A message typed as plain text as the email's HTML: paragraphs at blank lines, line breaks
    kept, everything escaped (the `{{ first_name }}`-style placeholders stay usable)."""
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "\n".join(
        "<p>" + "<br>\n".join(html.escape(line, quote=False) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )


async def create(session: AsyncSession, setup: ProgramSetup) -> ProgramInfo:
    """Create the program with its look, ladder and welcome email; all of it or nothing."""
    info = await programs_service.create_program(session, setup.program)
    await programs_service.put_branding(session, info, setup.branding)
    info = await programs_service.get_info(session, info.code)
    if setup.ladder is not None:
        await tiers_service.set_ladder(session, info, setup.ladder)
    if setup.welcome is not None:
        await templates_service.put_template(
            session, info, "welcome", "email", setup.welcome.locale, setup.welcome.template
        )
    return info
