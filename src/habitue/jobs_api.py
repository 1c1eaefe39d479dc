"""Routes: run a program's scheduled jobs now, as the scheduler and the CLI do.

Each job is also run by the server's scheduler (`jobs.run_all`; `jobs.run_program` for one
program) and by a CLI command:

| path | CLI | job |
|---|---|---|
| `POST …/jobs/expiry` | `habitue expire` | release due pending points, write down expired lots |
| `POST …/jobs/tiers` | `habitue tiers evaluate` | close due qualification periods, downgrades |
| `POST …/jobs/clubs` | `habitue clubs renew` | charge due club renewals, end lapsed ones |
| `POST …/jobs/referrals` | `habitue referrals pay` | pay referral rewards whose window closed |

Every job is idempotent: running it twice does nothing the second time. The older paths
`POST …/tiers/evaluate` and `POST …/club/renewals/run` stay.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from habitue import jobs
from habitue.clubs import jobs as clubs_jobs
from habitue.clubs.schemas import RenewalRun
from habitue.deps import DbDep, ProgramDep, scoped
from habitue.programs.service import Principal
from habitue.rewards import tasks as rewards_tasks
from habitue.tiers import jobs as tiers_jobs
from habitue.tiers.schemas import EvaluationRead

router = APIRouter(prefix="/v1/programs/{program}/jobs", tags=["jobs"])


class ExpiryRun(BaseModel):
    """What `POST …/jobs/expiry` did."""

    program: str
    released: int
    """Pending points released (their return window closed)."""
    members: int
    """Members whose expired lots were written down."""
    expired: int
    """Points written down as expired."""


class ReferralPayoutRun(BaseModel):
    """What `POST …/jobs/referrals` did."""

    program: str
    paid: int
    """Referrals whose both sides were rewarded."""


@router.post("/expiry", response_model=ExpiryRun)
async def run_expiry(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> ExpiryRun:
    released = await jobs.run_release(db, program.code)
    members, points = await jobs.run_expiry(db, program.code)
    return ExpiryRun(program=program.code, released=released, members=members, expired=points)


@router.post("/tiers", response_model=EvaluationRead)
async def run_tiers(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> EvaluationRead:
    done = await tiers_jobs.run_evaluation(db, program.code)
    return EvaluationRead(
        program=program.code, closed=done.closed, downgraded=done.downgraded, graced=done.graced
    )


@router.post("/clubs", response_model=RenewalRun)
async def run_clubs(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> RenewalRun:
    return await clubs_jobs.run_renewals(db, program.code)


@router.post("/referrals", response_model=ReferralPayoutRun)
async def run_referrals(
    program: ProgramDep, db: DbDep, _: Principal = scoped("rules:write")
) -> ReferralPayoutRun:
    paid = await rewards_tasks.run_referral_payouts(db, program.code)
    return ReferralPayoutRun(program=program.code, paid=paid)
