"""Rewards: catalogue, redemptions, coupons, pay-with-points, personal offers, referrals."""
