"""Errors of the rewards room, each with a stable problem type."""

from habitue.errors import Conflict, HabitueError, NotFound


class RewardNotFound(NotFound):
    type = "reward-not-found"
    title = "Reward not found"


class RewardExists(Conflict):
    type = "reward-exists"
    title = "Reward already exists"


class RewardNotAvailable(Conflict):
    type = "reward-not-available"
    title = "Reward not available"


class RewardNotRedeemable(Conflict):
    type = "reward-not-redeemable"
    title = "Reward cannot be redeemed this way"


class OutOfStock(Conflict):
    type = "out-of-stock"
    title = "Out of stock"


class MemberLimitReached(Conflict):
    type = "member-limit-reached"
    title = "Member limit reached"


class PeriodLimitReached(Conflict):
    type = "period-limit-reached"
    title = "Period limit reached"


class TierNotEligible(Conflict):
    type = "tier-not-eligible"
    title = "Tier not eligible"


class RedemptionNotFound(NotFound):
    type = "redemption-not-found"
    title = "Redemption not found"


class RedemptionNotCancelable(Conflict):
    type = "redemption-not-cancelable"
    title = "Redemption cannot be canceled"


class InvalidFulfilment(Conflict):
    type = "invalid-fulfilment-transition"
    title = "Invalid fulfilment transition"


class CouponLookupFailed(HabitueError):
    """A code that names no coupon of this program: counted against the guessing budget."""


class CouponNotFound(CouponLookupFailed):
    status = 404
    type = "coupon-not-found"
    title = "Coupon not found"


class InvalidCouponCode(CouponLookupFailed):
    status = 422
    type = "invalid-coupon-code"
    title = "Invalid coupon code"


class CouponAlreadyRedeemed(Conflict):
    type = "coupon-already-redeemed"
    title = "Coupon already redeemed"


class CouponExpired(Conflict):
    type = "coupon-expired"
    title = "Coupon expired"


class CouponCanceled(Conflict):
    type = "coupon-canceled"
    title = "Coupon canceled"


class CouponVoided(Conflict):
    type = "coupon-voided"
    title = "Coupon voided"


class RewardInUse(Conflict):
    type = "reward-in-use"
    title = "Reward named by a live rule"


class CouponNotApplicable(HabitueError):
    status = 422
    type = "coupon-not-applicable"
    title = "Coupon does not apply to this basket"


class OfferNotFound(NotFound):
    type = "offer-not-found"
    title = "Offer not found"


class OfferExists(Conflict):
    type = "offer-exists"
    title = "Offer already exists"


class OfferNotActive(Conflict):
    type = "offer-not-active"
    title = "Offer not active"


class OfferNotClipped(Conflict):
    type = "offer-not-clipped"
    title = "Offer not clipped"


class OfferAlreadyUsed(Conflict):
    type = "offer-already-used"
    title = "Offer already used"


class ReferralCodeNotFound(NotFound):
    type = "referral-code-not-found"
    title = "Referral code not found"


class SelfReferral(HabitueError):
    status = 422
    type = "self-referral"
    title = "A member cannot refer themselves"


class AlreadyReferred(Conflict):
    type = "already-referred"
    title = "Member already has a referrer"


class ReferralCapReached(Conflict):
    type = "referral-cap-reached"
    title = "Referrer cap reached"


class ReferralsNotConfigured(Conflict):
    type = "referrals-not-configured"
    title = "Referrals are not configured"
