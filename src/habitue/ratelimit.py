"""Rate limits against guessing: buckets per action and per key, client address or target.

Each bucket is a token bucket of `limit` tokens that refills over `period`: `limit` attempts at
once, then one every `period / limit`. It is kept as one number per key, its theoretical
arrival time (GCRA), so memory is one entry per active key whatever the limit, and the wait
it answers is exact.

Routes that count failures (unknown cards and coupons, wrong passwords) `check` before the
attempt and `hit` after a failure; a hit is counted even past an empty bucket, so failures
sent together all count and the wait grows with them. Routes that count every request
(sign-in links) `acquire`: take a token from every bucket, or none when one is empty.

Two implementations: in the process (the default; with several workers each has its own
buckets) and in Redis (`HABITUE_REDIS_URL`; shared by every worker and host, on the Redis
server's clock). If Redis cannot be reached, the Redis limiter counts in the process until it
can again, rather than letting guesses through or refusing every request.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from habitue.errors import RateLimited

if TYPE_CHECKING:
    from fastapi import Request

    from habitue.settings import Settings

log = structlog.get_logger()

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd]?)\s*$")


@dataclass(frozen=True)
class Rate:
    """`limit` attempts at once, refilled evenly over `period` seconds."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"30/1m"`, `"10/15m"`, `"5/1h"`, `"10/60s"` or `"10/60"` (seconds)."""
        found = _RATE.match(text)
        if not found:
            raise ValueError(f"{text!r} is not a rate like '30/1m' (count/period with s, m, h, d)")
        limit, amount, unit = int(found[1]), int(found[2] or 1), found[3]
        period = amount * _UNITS[unit]
        if limit < 1 or period < 1:
            raise ValueError(f"{text!r}: the count and the period must be at least 1")
        return cls(limit, float(period))

    @property
    def interval(self) -> float:
        """Seconds for one token to come back."""
        return self.period / self.limit


@dataclass(frozen=True)
class Bucket:
    """One bucket: its rate and its key (action, who or what it counts)."""

    rate: Rate
    key: str


class RateLimiter(Protocol):
    """Where buckets are kept."""

    async def check(self, *buckets: Bucket) -> float:
        """0 when every bucket holds a token, else the seconds until each does; takes none."""
        ...

    async def hit(self, *buckets: Bucket) -> None:
        """Take a token from every bucket, past empty if need be (the wait grows)."""
        ...

    async def acquire(self, *buckets: Bucket) -> float:
        """Take a token from every bucket and answer 0, or take none and answer `check`'s wait."""
        ...

    async def close(self) -> None:
        """Let go of connections."""
        ...


class MemoryRateLimiter:
    """Buckets in this process, at most `max_keys` of them: beyond, the least recently used
    go first; an entry whose bucket is full again is worth nothing and is dropped as it is met."""

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def __len__(self) -> int:
        return len(self._tats)

    def _wait(self, now: float, buckets: tuple[Bucket, ...]) -> float:
        wait = 0.0
        for b in buckets:
            tat = max(self._tats.get(b.key, now), now) + b.rate.interval
            wait = max(wait, tat - b.rate.period - now)
        return wait

    def _take(self, now: float, buckets: tuple[Bucket, ...]) -> None:
        for b in buckets:
            self._tats[b.key] = max(self._tats.get(b.key, now), now) + b.rate.interval
            self._tats.move_to_end(b.key)
        while self._tats:
            key, tat = next(iter(self._tats.items()))
            if len(self._tats) <= self._max_keys and tat > now:
                break
            del self._tats[key]

    async def check(self, *buckets: Bucket) -> float:
        return self._wait(self._clock(), buckets)

    async def hit(self, *buckets: Bucket) -> None:
        self._take(self._clock(), buckets)

    async def acquire(self, *buckets: Bucket) -> float:
        now = self._clock()
        wait = self._wait(now, buckets)
        if wait <= 0:
            self._take(now, buckets)
        return wait

    async def close(self) -> None:
        return None


# One script for the three operations (ARGV[1]: 0 check, 1 hit, 2 acquire; then an interval and
# a period per key). Times are integer microseconds of the Redis server's clock: below 2^53,
# exact in Lua's numbers.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tat = tat + interval
  if tat - period - now > wait then wait = tat - period - now end
  tats[i] = tat
end
if mode == 0 or (mode == 2 and wait > 0) then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
end
return wait
"""
_CHECK, _HIT, _ACQUIRE = 0, 1, 2


def _micros(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))


class RedisRateLimiter:
    """Buckets in Redis, one key each (`prefix` + a keyed hash of the bucket's key, so that no
    email or address is stored in clear), read and written atomically by a Lua script."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "habitue:rl:",
        secret: str = "",
        timeout: float = 0.5,
        fallback: MemoryRateLimiter | None = None,
    ) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._prefix = prefix
        self._secret = hashlib.sha256(secret.encode()).digest()
        self._script = self._redis.register_script(_SCRIPT)
        self._fallback = fallback or MemoryRateLimiter()
        self._down = False

    def _key(self, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), key=self._secret, digest_size=16).hexdigest()
        return self._prefix + digest

    async def _run(self, mode: int, buckets: tuple[Bucket, ...]) -> float:
        from redis.exceptions import ConnectionError, TimeoutError

        if not buckets:
            return 0.0
        args = [mode]
        for b in buckets:
            args += [_micros(b.rate.interval), _micros(b.rate.period)]
        try:
            wait = await self._script(keys=[self._key(b.key) for b in buckets], args=args)
        except (ConnectionError, TimeoutError) as exc:
            if not self._down:
                log.warning(
                    "rate limiter: Redis unreachable, counting in this process", error=str(exc)
                )
            self._down = True
            if mode == _CHECK:
                return await self._fallback.check(*buckets)
            if mode == _HIT:
                await self._fallback.hit(*buckets)
                return 0.0
            return await self._fallback.acquire(*buckets)
        if self._down:
            log.info("rate limiter: Redis reachable again")
        self._down = False
        return int(wait) / 1_000_000

    async def check(self, *buckets: Bucket) -> float:
        return await self._run(_CHECK, buckets)

    async def hit(self, *buckets: Bucket) -> None:
        await self._run(_HIT, buckets)

    async def acquire(self, *buckets: Bucket) -> float:
        return await self._run(_ACQUIRE, buckets)

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(frozen=True)
class Limits:
    """The rates in force, read from the settings once."""

    card_misses: Rate
    coupon_misses: Rate
    signin_failures: Rate
    signin_links: Rate
    signin_links_per_address: Rate

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            card_misses=Rate.parse(settings.rate_card_misses),
            coupon_misses=Rate.parse(settings.rate_coupon_misses),
            signin_failures=Rate.parse(settings.rate_signin_failures),
            signin_links=Rate.parse(settings.rate_signin_links),
            signin_links_per_address=Rate.parse(settings.rate_signin_links_per_address),
        )


def limiter_for(settings: Settings) -> RateLimiter:
    """Redis when `HABITUE_REDIS_URL` is set, else in the process."""
    memory = MemoryRateLimiter(max_keys=settings.rate_limit_max_keys)
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url,
            prefix=settings.redis_prefix,
            secret=settings.hmac_key,
            fallback=memory,
        )
    return memory


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def limits_of(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def client_address(request: Request) -> str:
    """The client's address as the ASGI server reports it. uvicorn reads `X-Forwarded-For` only
    from the addresses in `FORWARDED_ALLOW_IPS` (`--forwarded-allow-ips`; 127.0.0.1 by
    default): set it to the reverse proxy's, never to everyone."""
    return request.client.host if request.client else "unknown"


def retry_after(wait: float) -> int:
    """Whole seconds for `Retry-After`: at least 1."""
    return max(1, math.ceil(wait))


def refusal(wait: float, what: str) -> RateLimited:
    seconds = retry_after(wait)
    return RateLimited(f"too many {what}; try again in {seconds} s", retry_after=seconds)


async def take(limiter: RateLimiter, buckets: list[Bucket], what: str) -> None:
    """Take a token from every bucket, or raise `RateLimited` (naming `what` is counted)."""
    wait = await limiter.acquire(*buckets)
    if wait > 0:
        raise refusal(wait, what)


class Attempt:
    """The outcome of an attempt counted by `failures_of`: a success unless told otherwise."""

    def __init__(self) -> None:
        self.failed = False

    def fail(self) -> None:
        self.failed = True


@contextlib.asynccontextmanager
async def failures_of(
    limiter: RateLimiter,
    buckets: list[Bucket],
    what: str,
    *,
    failures: tuple[type[Exception], ...] = (),
) -> AsyncIterator[Attempt]:
    """Run an attempt that costs a token only when it fails: `RateLimited` before the block when
    a bucket is empty; a token taken from each after it when the block raised one of `failures`
    or called `fail()`."""
    wait = await limiter.check(*buckets)
    if wait > 0:
        raise refusal(wait, what)
    outcome = Attempt()
    try:
        yield outcome
    except failures:
        await limiter.hit(*buckets)
        raise
    if outcome.failed:
        await limiter.hit(*buckets)
