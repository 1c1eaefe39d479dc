"""The limiter itself: rates, the in-process buckets, the Redis buckets (against the local
Redis), the choice between them, and the documented defaults."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from habitue.api import create_app
from habitue.db import Database
from habitue.ratelimit import (
    Bucket,
    Limits,
    MemoryRateLimiter,
    Rate,
    RateLimiter,
    RedisRateLimiter,
    limiter_for,
)
from habitue.settings import Settings
from tests.clients import Clock, limited
from tests.conftest import create_program
from tests.members.test_ratelimit import guess

REDIS_URL = os.environ.get("HABITUE_TEST_REDIS", "redis://127.0.0.1:6379/0")
README = Path(__file__).parent.parent / "README.md"
RATE_SETTINGS = [
    "rate_card_misses",
    "rate_coupon_misses",
    "rate_signin_failures",
    "rate_signin_links",
    "rate_signin_links_per_address",
]


def test_rates_parse() -> None:
    assert Rate.parse("30/1m") == Rate(30, 60.0)
    assert Rate.parse("10/15m") == Rate(10, 900.0)
    assert Rate.parse("5/1h") == Rate(5, 3600.0)
    assert Rate.parse("10/60") == Rate(10, 60.0)
    assert Rate.parse(" 3 / 2d ") == Rate(3, 172800.0)
    assert Rate.parse("10/15m").interval == 90.0
    for bad in ("", "30", "0/1m", "5/0s", "-1/1m", "5/1w", "1e3/1m", "five/1m"):
        with pytest.raises(ValueError, match="rate|at least"):
            Rate.parse(bad)


def test_settings_refuse_a_bad_rate_or_redis_url() -> None:
    with pytest.raises(ValidationError, match="rate_card_misses"):
        Settings(rate_card_misses="lots")
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(redis_url="http://127.0.0.1:6379")
    assert Settings(redis_url="  ").redis_url is None


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.model_construct()  # the defaults, whatever the environment says
    limits = Limits.from_settings(settings)
    assert limits == Limits(
        card_misses=Rate(30, 60.0),
        coupon_misses=Rate(10, 60.0),
        signin_failures=Rate(10, 900.0),
        signin_links=Rate(5, 3600.0),
        signin_links_per_address=Rate(20, 3600.0),
    )
    assert settings.redis_url is None
    readme = README.read_text()
    for name in [*RATE_SETTINGS, "redis_url", "redis_prefix", "rate_limit_max_keys"]:
        default = str(Settings.model_fields[name].default)
        row = re.search(rf"^\|[^\n]*`HABITUE_{name.upper()}`[^\n]*$", readme, re.M)
        assert row, f"HABITUE_{name.upper()} is not documented in README.md"
        if default != "None":
            assert f"`{default}`" in row[0], f"README gives another default for {name}"


def test_the_app_limits_in_process_unless_redis_is_configured() -> None:
    assert isinstance(limiter_for(Settings()), MemoryRateLimiter)
    assert isinstance(limiter_for(Settings(redis_url=REDIS_URL)), RedisRateLimiter)
    app = create_app(Settings(env="test", scheduler=False, worker=False, rate_card_misses="3/1h"))
    assert isinstance(app.state.limiter, MemoryRateLimiter)
    assert app.state.limits.card_misses == Rate(3, 3600.0)


async def exercise(limiter: RateLimiter) -> None:
    """What every implementation does (the rates are slow enough for a wall clock)."""
    rate = Rate(3, 3600.0)
    a, b, c = (Bucket(rate, f"k:{secrets.token_hex(4)}") for _ in range(3))
    for _ in range(3):
        assert await limiter.check(a) == 0
        await limiter.hit(a)
    wait = await limiter.check(a)
    assert 1190 < wait <= 1200  # one token comes back every 20 minutes
    assert await limiter.check(b) == 0  # another key is untouched
    await limiter.hit(a)  # counted past empty: the wait grows
    assert 2390 < await limiter.check(a) <= 2400
    # acquire takes from every bucket, or from none when one is empty
    for _ in range(3):
        assert await limiter.acquire(b, c) == 0
    assert await limiter.acquire(c) > 0
    assert 1190 < await limiter.acquire(b, Bucket(rate, "fresh:" + secrets.token_hex(4))) <= 1200
    assert await limiter.check(*(Bucket(rate, f"k:{secrets.token_hex(4)}") for _ in range(3))) == 0
    assert await limiter.acquire() == 0


async def test_memory_buckets_refill_and_stay_bounded() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(max_keys=1000, clock=clock)
    await exercise(limiter)
    rate = Rate(2, 60.0)
    key = Bucket(rate, "card:1:key:k")
    await limiter.hit(key)
    await limiter.hit(key)
    assert await limiter.check(key) == 30
    clock.advance(29.5)
    assert await limiter.check(key) == pytest.approx(0.5)
    clock.advance(0.5)
    assert await limiter.check(key) == 0
    # memory: at most max_keys buckets, the least recently used go first
    for i in range(5000):
        await limiter.hit(Bucket(rate, f"spray:{i}"))
    assert len(limiter) == 1000
    assert await limiter.check(Bucket(rate, "spray:4999")) == 0  # one hit of two: still a token
    await limiter.hit(Bucket(rate, "spray:4999"))
    assert await limiter.check(Bucket(rate, "spray:4999")) > 0
    # full buckets are dropped as they are met
    clock.advance(3600)
    await limiter.hit(Bucket(rate, "last"))
    assert len(limiter) == 1


@pytest.fixture
async def redis_limiter() -> AsyncIterator[RedisRateLimiter]:
    """A limiter on the local Redis with a prefix of its own; CI requires Redis."""
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError

    probe = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await probe.ping()
    except ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is unreachable at {REDIS_URL} and CI requires it")
        pytest.skip("Redis is unreachable")
    finally:
        await probe.aclose()
    prefix = f"habitue-test:{secrets.token_hex(6)}:"
    limiter = RedisRateLimiter(REDIS_URL, prefix=prefix, secret="test-secret")
    yield limiter
    await limiter.close()
    cleanup = Redis.from_url(REDIS_URL)
    keys = [k async for k in cleanup.scan_iter(match=prefix + "*")]
    if keys:
        await cleanup.delete(*keys)
    await cleanup.aclose()


async def test_redis_buckets(redis_limiter: RedisRateLimiter) -> None:
    from redis.asyncio import Redis

    await exercise(redis_limiter)
    rate = Rate(2, 60.0)
    email = Bucket(rate, f"signin-link:1:{secrets.token_hex(4)}@example.com")
    await redis_limiter.hit(email)
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() async for k in redis.scan_iter(match=redis_limiter._prefix + "*")]
        assert keys
        assert not any("example.com" in k for k in keys)  # keys are hashed
        key = redis_limiter._key(email.key)
        ttl = await redis.pttl(key)
        assert 29_000 < ttl <= 30_000  # gone once the bucket is full again
    finally:
        await redis.aclose()


async def test_redis_buckets_are_shared_by_every_worker(
    redis_limiter: RedisRateLimiter, settings: Settings, db: Database
) -> None:
    """Two applications (two workers, or two hosts) on one Redis count together."""
    prefix = redis_limiter._prefix
    settings = settings.model_copy(
        update={"redis_url": REDIS_URL, "redis_prefix": prefix, "rate_card_misses": "4/1h"}
    )
    apps = [create_app(settings, db=db), create_app(settings, db=db)]

    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
    ):
        assert all(isinstance(a.state.limiter, RedisRateLimiter) for a in apps)
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=a, client=("10.9.0.1", 1)),
                base_url="http://test",
                headers={"Authorization": "Bearer test-admin-key"},
            )
            for a in apps
        ]
        async with clients[0] as one, clients[1] as two:
            program = await create_program(one)
            for i in range(4):
                c = (one, two)[i % 2]
                r = await c.get(f"/v1/programs/{program}/cards/{guess()}")
                assert r.status_code == 404, r.text
            for c in (one, two):
                limited(await c.get(f"/v1/programs/{program}/cards/90"), 900)


async def test_without_redis_the_limits_hold_in_the_process() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", timeout=0.2)
    try:
        await exercise(limiter)
    finally:
        await limiter.close()
