"""What a person reads instead of a code: privileges, statuses and kinds, in EN/FR/DA.

Every code a page shows goes through `label(group, code)`: the program's own word for it
when it has one (`habitue.web.words`), else the built-in label below (translated by the
page's catalogue), else the code made readable ("free_refill" → "Free refill"), which
`tests/web/test_labels.py` refuses for every code the rooms can produce.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from habitue.web.i18n import _l

PRIVILEGES = {
    "free_refill": _l("Free refill"),
    "priority_queue": _l("Skip the queue"),
    "presale": _l("Early access to sales"),
    "members_evening": _l("Members' evenings"),
    "fast_lane": _l("Fast lane at the counter"),
    "free_delivery": _l("Free delivery"),
    "birthday_treat": _l("Birthday treat"),
    "free-delivery": _l("Free delivery"),
    "priority-queue": _l("Skip the queue"),
}
MEMBER_STATUSES = {
    "active": _l("Active"),
    "suspended": _l("Suspended"),
    "held": _l("Held for review"),
    "closed": _l("Closed"),
    "erased": _l("Erased"),
}
CARD_STATUSES = {
    "active": _l("Active"),
    "blocked": _l("Blocked"),
    "replaced": _l("Replaced"),
    "erased": _l("Erased"),
}
CLUB_STATUSES = {
    "incomplete": _l("Waiting for the first payment"),
    "trialing": _l("Free trial"),
    "active": _l("Active"),
    "past_due": _l("Payment overdue"),
    "canceled": _l("Canceled"),
    "expired": _l("Ended"),
}
REDEMPTION_STATUSES = {
    "ordered": _l("Ordered"),
    "shipped": _l("Shipped"),
    "delivered": _l("Delivered"),
    "issued": _l("Coupon issued"),
    "donated": _l("Donated"),
    "canceled": _l("Canceled"),
}
COUPON_STATES = {
    "issued": _l("Ready to use"),
    "redeemed": _l("Used"),
    "expired": _l("Expired"),
    "canceled": _l("Canceled"),
    "voided": _l("Voided"),
}
LEDGER_KINDS = {
    "earn": _l("Points earned"),
    "purchase": _l("Points earned"),
    "refund": _l("Refund"),
    "spend": _l("Points spent"),
    "redeem": _l("Reward"),
    "adjust": _l("Adjustment"),
    "expire": _l("Points expired"),
    "release": _l("Points confirmed"),
    "reverse": _l("Taken back"),
    "transfer": _l("Transfer"),
    "partner": _l("Partner points"),
    "club": _l("Club points"),
    "referral": _l("Referral bonus"),
    "return": _l("Points given back"),
    "takeback": _l("Taken back"),
    "club_voucher": _l("Club points"),
}
EFFECT_KINDS = {
    "earn": _l("Base points"),
    "multiplier": _l("Extra points from a multiplier"),
    "tier_credits": _l("Tier credits"),
    "return": _l("Points given back"),
    "takeback": _l("Taken back"),
    "fixed": _l("Bonus points"),
    "per_unit": _l("Points per item"),
    "benefit": _l("Privilege"),
    "coupon": _l("Coupon"),
    "cap": _l("Cap"),
    "tier": _l("Tier multiplier"),
    "club": _l("Club multiplier"),
    "base": _l("Base points"),
    "multiplier_other": _l("Other multiplier"),
    "per_line": _l("Points per line"),
    "per_currency_unit": _l("Points per unit of money"),
}
RFM_GROUPS = {
    "Champions": _l("Champions"),
    "Loyal": _l("Loyal"),
    "Potential loyalists": _l("Potential loyalists"),
    "New": _l("New"),
    "Promising": _l("Promising"),
    "Need attention": _l("Need attention"),
    "About to sleep": _l("About to sleep"),
    "At risk": _l("At risk"),
    "Can't lose them": _l("Can't lose them"),
    "Hibernating": _l("Hibernating"),
    "Lost": _l("Lost"),
}
CONSENT_CHANNELS = {
    "email": _l("Email"),
    "sms": _l("Text messages"),
    "push": _l("Notifications"),
    "analytics": _l("Analytics"),
    "profiling": _l("Personal offers"),
    "partners": _l("Sharing with partners"),
}
DISCOUNT_SOURCES = {  # the promotions room's `Source`
    "promotion": _l("Promotion"),
    "coupon": _l("Coupon"),
    "offer": _l("Personal offer"),
}
DISCOUNT_EFFECTS = {
    "order_percent": _l("Percent off the order"),
    "order_amount": _l("Amount off the order"),
    "lines_percent": _l("Percent off matching lines"),
    "lines_amount": _l("Amount off each matching item"),
    "cheapest": _l("Cheapest item"),
    "most_expensive": _l("Most expensive item"),
    "buy_x_get_y": _l("Buy X get Y"),
    "bundle_price": _l("Bundle price"),
    "free_item": _l("Free item"),
    "stored_value": _l("Voucher or gift card"),
}
GROUPS: dict[str, Mapping[str, str]] = {
    "discount_source": DISCOUNT_SOURCES,
    "discount_effect": DISCOUNT_EFFECTS,
    "rfm_group": RFM_GROUPS,
    "consent": CONSENT_CHANNELS,
    "privilege": PRIVILEGES,
    "member_status": MEMBER_STATUSES,
    "card_status": CARD_STATUSES,
    "club_status": CLUB_STATUSES,
    "redemption_status": REDEMPTION_STATUSES,
    "coupon_state": COUPON_STATES,
    "ledger_kind": LEDGER_KINDS,
    "effect_kind": EFFECT_KINDS,
}


def readable(code: str) -> str:
    """The code made readable, for a program's own code without a word yet."""
    text = code.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def has_label(group: str, code: str) -> bool:
    return code in GROUPS.get(group, {})


Translate = Callable[[str], str]
Words = Mapping[tuple[str, str], str]


def label(group: str, code: str, translate: Translate, words: Words | None = None) -> str:
    """What the reader sees for `code` of `group`: the program's word, the built-in label
    translated, or the readable code."""
    if words:
        own = words.get((group, code))
        if own:
            return own
    built_in = GROUPS.get(group, {}).get(code)
    if built_in is not None:
        return translate(built_in)
    return readable(code)
