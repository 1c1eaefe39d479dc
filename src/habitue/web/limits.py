"""Rate limits of the pages: wrong passwords (portal and console) and sign-in links asked for.

A wrong password costs a token from the account's bucket and from the client address's. A
sign-in link asked for costs a token from the email's bucket (per program) and from the
address's. An empty bucket re-renders the form with status 429, a message and `Retry-After`,
before the password is checked or a link is sent.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from habitue import ratelimit
from habitue.web.i18n import _l

TOO_MANY_PASSWORDS = _l("Too many wrong attempts. Please wait a few minutes and try again.")
TOO_MANY_LINKS = _l("Too many sign-in links were asked for. Please try again later.")


def password_buckets(request: Request, account: str | None) -> list[ratelimit.Bucket]:
    """The buckets a wrong password costs: `account` (when an email was given) and the
    client's address."""
    rate = ratelimit.limits_of(request).signin_failures
    buckets = [ratelimit.Bucket(rate, f"password:addr:{ratelimit.client_address(request)}")]
    if account:
        buckets.append(ratelimit.Bucket(rate, f"password:{account}"))
    return buckets


def link_buckets(request: Request, program_id: int, email: str) -> list[ratelimit.Bucket]:
    """The buckets a sign-in link asked for costs: the email's in the program, the address's."""
    limits = ratelimit.limits_of(request)
    address = ratelimit.client_address(request)
    return [
        ratelimit.Bucket(limits.signin_links, f"signin-link:{program_id}:{email.lower()}"),
        ratelimit.Bucket(limits.signin_links_per_address, f"signin-link:addr:{address}"),
    ]


async def check(request: Request, buckets: list[ratelimit.Bucket]) -> float:
    """0 when every bucket holds a token, else the seconds to wait."""
    return await ratelimit.limiter_of(request).check(*buckets)


async def hit(request: Request, buckets: list[ratelimit.Bucket]) -> None:
    """Count a failure against every bucket."""
    await ratelimit.limiter_of(request).hit(*buckets)


async def acquire(request: Request, buckets: list[ratelimit.Bucket]) -> float:
    """0 when a token was taken from every bucket, else the seconds to wait (none taken)."""
    return await ratelimit.limiter_of(request).acquire(*buckets)


def refused(response: Response, wait: float) -> Response:
    """`response` (a form rendered with status 429) with its `Retry-After`."""
    response.headers["Retry-After"] = str(ratelimit.retry_after(wait))
    return response
