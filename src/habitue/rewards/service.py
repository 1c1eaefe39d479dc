"""Pay with points at the till: the quote, through the pure `till.pay_with_points`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from habitue.errors import ValidationFailed
from habitue.ledger import service as ledger_service
from habitue.members.service import MemberRef
from habitue.money import MoneyFormatError, format_minor, parse_minor
from habitue.programs.service import ProgramInfo
from habitue.rewards.schemas import PayQuoteIn, PayQuoteRead
from habitue.rewards.till import pay_with_points


async def pay_quote(
    session: AsyncSession, program: ProgramInfo, member: MemberRef, data: PayQuoteIn
) -> PayQuoteRead:
    """The points the member can use on this basket and the discount they buy; writes nothing.

    Send `points` as the purchase's `spend_points` to apply it.
    """
    exp = program.currency_exponent
    try:
        total = parse_minor(data.total, exp)
    except MoneyFormatError as exc:
        raise ValidationFailed("total", str(exc)) from exc
    balance = (await ledger_service.balances(session, member.accounts, expiring=0))["available"]
    pay = pay_with_points(
        total_minor=total,
        balance=balance,
        rate=program.redeem_rate,
        step=program.redeem_step,
        exponent=exp,
        max_points=data.max_points,
    )
    return PayQuoteRead(
        points=pay.points,
        discount=format_minor(pay.discount_minor, exp),
        total=format_minor(total, exp),
        to_pay=format_minor(total - pay.discount_minor, exp),
        balance=balance,
        rate=str(program.redeem_rate),
        step=program.redeem_step,
    )
