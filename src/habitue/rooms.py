"""The rooms on the event path, listed once: `build_pipeline` is what every event goes through.

Called once by each entry point that records events (`api.create_app`, the CLI's `consume`
and `demo`); the pipeline is then passed down. Nothing registers itself at import time: a
stage missing here does not run, and a stage listed here runs in the order written.
"""

from __future__ import annotations

from habitue.analytics import hooks as analytics
from habitue.clubs import hooks as clubs
from habitue.events.apply import Appliers
from habitue.events.pipeline import Pipeline
from habitue.members import service as members
from habitue.partners import hooks as partners
from habitue.rewards import hooks as rewards
from habitue.rules import hooks as rules
from habitue.tiers import hooks as tiers


def build_pipeline() -> Pipeline:
    """The event pipeline of every room, in its stages' order (see `events.pipeline`)."""
    return Pipeline(
        # Read with the member, in its own query; first the member's status under its row
        # lock (an erasure running holds it: the event then sees the member erased).
        member_reads=(
            members.LOCKED_STATUS,
            *rewards.MEMBER_READS,
            *tiers.MEMBER_READS,
            *rules.MEMBER_READS,
        ),
        # What the rules see of the member, added in this order.
        enrichers=(
            tiers.enrich,
            tiers.enrich_granted,
            clubs.enrich,
            rules.enrich,
            analytics.enrich,
        ),
        rule_loaders=(rules.load_rules,),
        usage=rules.load_usage,
        # One applier per effect kind written outside the ledger (`events.apply`).
        appliers=Appliers(
            benefit=tiers.grant_benefit,
            coupon=rewards.issue_coupon,
            void_coupons=rewards.void_coupons,
        ),
        after_event=(rewards.after_event, tiers.after_event, rules.after_event),
        after_record=(partners.after_record,),
        after_refund=(
            rewards.after_refund,
            tiers.after_refund,
            rules.after_refund,
            partners.after_refund,
        ),
    )


def load() -> Pipeline:
    """The pipeline (`build_pipeline`); kept for callers written before it existed."""
    return build_pipeline()
