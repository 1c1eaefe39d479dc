"""Routers of the domain rooms beyond the foundation; each room adds its own line here."""

from __future__ import annotations

from typing import Any


def extra_routers() -> list[Any]:
    routers: list[Any] = []
    # The till's hot path first: a request is matched against the routes in order, and the
    # console's many routes cost a basket about 3 ms of matching when they came before
    # (bench/price_statements.py). No other router has these paths, so the order is free.
    routers.append(__import__("habitue.promotions.api", fromlist=["router"]).router)  # promotions
    routers += __import__("habitue.web.routes", fromlist=["routers"]).routers()  # web
    routers.append(__import__("habitue.tiers.api", fromlist=["router"]).router)  # tiers
    routers.append(__import__("habitue.clubs.api", fromlist=["router"]).router)  # clubs
    routers.append(__import__("habitue.rewards.api", fromlist=["router"]).router)  # rewards
    routers.append(__import__("habitue.analytics.api", fromlist=["router"]).router)  # analytics
    routers.append(__import__("habitue.rules.api", fromlist=["router"]).router)  # rules
    routers.append(__import__("habitue.rules.drafts_api", fromlist=["router"]).router)  # rules
    routers.append(__import__("habitue.partners.api", fromlist=["router"]).router)  # partners
    routers.append(__import__("habitue.privacy.api", fromlist=["router"]).router)  # privacy
    routers.append(__import__("habitue.jobs_api", fromlist=["router"]).router)  # jobs
    messaging = __import__("habitue.messaging.api_newsletters", fromlist=["router"])  # messaging
    routers += [messaging.router, messaging.public]  # messaging
    return routers
