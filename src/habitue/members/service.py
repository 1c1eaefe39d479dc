"""Enrolment, lookup, profile changes and cards."""

from __future__ import annotations

from habitue.members.card_actions import block_card, lookup_card, replace_card
from habitue.members.enrolment import enrol
from habitue.members.lifetime import add_lifetime, lifetime_part, lifetimes_part
from habitue.members.profile import balance, balance_of, find, read, update_member
from habitue.members.refs import (
    BATCH_SLOT,
    LOCKED_STATUS,
    MemberColumn,
    MemberRef,
    Reads,
    contact_hash,
    hand_over,
    member_row,
    phone_normal,
    prefetch,
    prefetch_named,
    program_of,
    public_ids_named,
    refs_by_external_id,
    resolve,
    resolve_in_batch,
    resolve_many_for_event,
    with_locked_status,
)

__all__ = [
    "BATCH_SLOT",
    "LOCKED_STATUS",
    "MemberColumn",
    "MemberRef",
    "Reads",
    "add_lifetime",
    "balance",
    "balance_of",
    "block_card",
    "contact_hash",
    "enrol",
    "find",
    "lifetime_part",
    "lifetimes_part",
    "hand_over",
    "lookup_card",
    "member_row",
    "phone_normal",
    "prefetch",
    "prefetch_named",
    "program_of",
    "public_ids_named",
    "read",
    "refs_by_external_id",
    "replace_card",
    "resolve",
    "resolve_in_batch",
    "resolve_many_for_event",
    "update_member",
    "with_locked_status",
]
