"""The paid VIP club: plans, subscriptions, payments through a provider, renewals."""
