"""Customer lifetime value: BG/NBD for purchases and churn, Gamma-Gamma for spend.

The models are fitted by maximum likelihood from their closed-form log-likelihoods:

- BG/NBD, Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to
  the Pareto/NBD Model", Marketing Science 24(2), equations (6), (11) and (10);
- Gamma-Gamma, Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer
  Base Analysis", Journal of Marketing Research 42(4), and Fader & Hardie's note
  "The Gamma-Gamma Model of Monetary Value" (2013).

Inputs are per-customer arrays in the RFM summary form: ``frequency`` is the number of repeat
purchases (purchase days after the first), ``recency`` the age of the customer at the last
purchase, ``T`` the age at the end of the calibration period, all in one time unit (weeks for
CDNOW). Parameters are optimised on their logarithms, so they stay positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from habitue.analytics.errors import InvalidAnalyticsInput, ModelNotFitted

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

DAYS_PER_MONTH = 365.25 / 12.0


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters for the spend per transaction (p, q, gamma)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True, slots=True)
class RfmSummary:
    """Per-customer summary of a transaction log over a calibration period."""

    customer_id: npt.NDArray[np.str_]
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray


def _as_float(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InvalidAnalyticsInput(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(array)):
        raise InvalidAnalyticsInput(f"{name} must hold finite numbers")
    return array


def _rfm_arrays(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_float(frequency, "frequency")
    t_x = _as_float(recency, "recency")
    t_cal = _as_float(T, "T")
    x, t_x, t_cal = np.broadcast_arrays(x, t_x, t_cal)
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise InvalidAnalyticsInput("frequency must be a non-negative whole number")
    if np.any(t_x < 0) or np.any(t_cal < 0):
        raise InvalidAnalyticsInput("recency and T must be non-negative")
    if np.any(t_x > t_cal * (1 + 1e-9) + 1e-9):
        raise InvalidAnalyticsInput("recency must not exceed T")
    # A customer without repeat purchases has no last repeat purchase: recency is 0 by definition.
    t_x = np.where(x > 0, np.minimum(t_x, t_cal), 0.0)
    return x.astype(np.float64), t_x, t_cal.astype(np.float64)


def _bgnbd_log_terms(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, t_cal: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (log A, log B, log C): likelihood = A * (B + C), C = 0 when x = 0."""
    repeat = x > 0
    log_a = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    log_b = -(r + x) * np.log(alpha + t_cal)
    safe_denominator = np.where(repeat, b + x - 1.0, 1.0)
    log_c = np.where(
        repeat,
        np.log(a) - np.log(safe_denominator) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return log_a, log_b, log_c


def bgnbd_log_likelihood(
    params: BgNbdParams | tuple[float, float, float, float],
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood (equation 6 of Fader, Hardie & Lee 2005), finite."""
    r, alpha, a, b = _bgnbd_tuple(params)
    x, t_x, t_cal = _rfm_arrays(frequency, recency, T)
    log_a, log_b, log_c = _bgnbd_log_terms(r, alpha, a, b, x, t_x, t_cal)
    result: FloatArray = log_a + np.logaddexp(log_b, log_c)
    return result


def _bgnbd_tuple(
    params: BgNbdParams | tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    if isinstance(params, BgNbdParams):
        return params.r, params.alpha, params.a, params.b
    r, alpha, a, b = (float(v) for v in params)
    return r, alpha, a, b


def _minimise(objective: Callable[[FloatArray], float], start: FloatArray) -> FloatArray:
    """Minimise on log-parameters: L-BFGS-B to get close, Nelder-Mead to polish."""
    fun = objective
    first = minimize(fun, start, method="L-BFGS-B")
    polished = minimize(
        fun,
        first.x,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20_000, "maxfev": 20_000},
    )
    best = polished if polished.fun <= first.fun else first
    solution: FloatArray = np.asarray(best.x, dtype=np.float64)
    return solution


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters for the customers given (all must be valid)."""
    x, t_x, t_cal = _rfm_arrays(frequency, recency, T)
    if x.size == 0:
        raise ModelNotFitted("BG/NBD needs at least one customer")
    if not np.any(x > 0):
        raise ModelNotFitted("BG/NBD needs at least one repeat purchase")
    scale = float(np.mean(t_cal)) or 1.0

    def negative_ll(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(np.clip(log_params, -30.0, 30.0))
        log_a, log_b, log_c = _bgnbd_log_terms(r, alpha, a, b, x, t_x, t_cal)
        total = float(np.sum(log_a + np.logaddexp(log_b, log_c)))
        return -total if np.isfinite(total) else 1e300

    start = np.log(np.array([1.0, scale, 1.0, 1.0]))
    solution = _minimise(negative_ll, start)
    r, alpha, a, b = (float(v) for v in np.exp(solution))
    return BgNbdParams(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=-negative_ll(solution),
        n_customers=int(x.size),
    )


def probability_alive(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Probability, in [0, 1], that each customer is still active at the end of T."""
    x, t_x, t_cal = _rfm_arrays(frequency, recency, T)
    _, log_b, log_c = _bgnbd_log_terms(params.r, params.alpha, params.a, params.b, x, t_x, t_cal)
    # P(alive) = B / (B + C) = 1 / (1 + exp(log C - log B)); exp(-inf) = 0 when x = 0.
    result: FloatArray = np.exp(-np.logaddexp(0.0, log_c - log_b))
    return result


def conditional_expected_purchases(
    params: BgNbdParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Expected purchases in the next ``t`` time units given each customer's history (≥ 0)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, t_cal = _rfm_arrays(frequency, recency, T)
    horizon = _as_float(t, "t")
    if np.any(horizon < 0):
        raise InvalidAnalyticsInput("t must be non-negative")
    horizon, x, t_x, t_cal = np.broadcast_arrays(horizon, x, t_x, t_cal)
    z = horizon / (alpha + t_cal + horizon)
    # Equation (10) has ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; z); Euler's transformation
    # 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns it into the product below, whose
    # hypergeometric parameters no longer grow with x, so it stays finite for heavy buyers.
    tail = np.power(1.0 - z, a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - tail)
    alive = probability_alive(params, x, t_x, t_cal)
    result: FloatArray = np.maximum(numerator * alive, 0.0)
    return result


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters over the customers with frequency > 0.

    Repeat buyers whose mean spend is not positive (free orders, refunds exceeding purchases)
    carry no information for a Gamma model of spend and are left out of the fit; the count of
    customers used is in ``n_customers``.
    """
    x = _as_float(frequency, "frequency")
    m = _as_float(monetary_value, "monetary_value")
    if x.shape != m.shape:
        raise InvalidAnalyticsInput("frequency and monetary_value must have the same length")
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size == 0:
        raise ModelNotFitted("Gamma-Gamma needs at least one repeat buyer")
    log_m = np.log(m)
    log_x = np.log(x)

    def negative_ll(log_params: FloatArray) -> float:
        p, q, gamma = np.exp(np.clip(log_params, -30.0, 30.0))
        px = p * x
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1.0) * log_m
            + px * log_x
            - (px + q) * np.log(gamma + x * m)
        )
        total = float(np.sum(ll))
        return -total if np.isfinite(total) else 1e300

    start = np.log(np.array([1.0, 1.0, float(np.mean(m))]))
    solution = _minimise(negative_ll, start)
    p, q, gamma = (float(v) for v in np.exp(solution))
    return GammaGammaParams(
        p=p, q=q, gamma=gamma, log_likelihood=-negative_ll(solution), n_customers=int(x.size)
    )


def conditional_expected_spend(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """Expected spend per transaction per customer; the population mean where frequency is 0."""
    x = _as_float(frequency, "frequency")
    m = _as_float(monetary_value, "monetary_value")
    x, m = np.broadcast_arrays(x, m)
    p, q, gamma = params.p, params.q, params.gamma
    if q <= 1.0:
        raise ModelNotFitted("Gamma-Gamma with q <= 1 has no finite expected spend")
    population_mean = p * gamma / (q - 1.0)
    repeat = x > 0
    safe_m = np.where(repeat, m, 0.0)
    individual = p * (gamma + x * safe_m) / (p * x + q - 1.0)
    result: FloatArray = np.where(repeat, individual, population_mean)
    return result


def customer_lifetime_value(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon_months: int = 12,
    annual_discount_rate: float = 0.10,
    time_unit_days: float = 7.0,
) -> FloatArray:
    """Discounted expected revenue per customer over the horizon, in monetary_value's unit."""
    if horizon_months < 1:
        raise InvalidAnalyticsInput("horizon_months must be at least 1")
    if not np.isfinite(annual_discount_rate) or annual_discount_rate <= -1.0:
        raise InvalidAnalyticsInput("annual_discount_rate must be greater than -100 %")
    if not time_unit_days > 0:
        raise InvalidAnalyticsInput("time_unit_days must be positive")
    x, t_x, t_cal = _rfm_arrays(frequency, recency, T)
    spend = conditional_expected_spend(gamma_gamma, x, monetary_value)
    monthly_rate = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    month = DAYS_PER_MONTH / time_unit_days
    value = np.zeros_like(x)
    previous = np.zeros_like(x)
    for k in range(1, horizon_months + 1):
        cumulative = conditional_expected_purchases(bgnbd, k * month, x, t_x, t_cal)
        value += (cumulative - previous) / (1.0 + monthly_rate) ** k
        previous = cumulative
    result: FloatArray = value * spend
    return result


def summarise_transactions(
    customer_id: ArrayLike,
    occurred_on: ArrayLike,
    amount: ArrayLike,
    *,
    calibration_end: np.datetime64 | str,
    time_unit_days: float = 7.0,
) -> RfmSummary:
    """Frequency, recency, T and repeat-purchase mean spend per customer up to calibration_end.

    Purchases on the same day are summed into one transaction; frequency counts the purchase
    days after the first; monetary value is the mean of those repeat days' amounts (0 when there
    are none), the definition behind the published CDNOW Gamma-Gamma estimates.
    """
    ids = np.asarray(customer_id).astype(np.str_)
    days = np.asarray(occurred_on).astype("datetime64[D]").astype(np.int64)
    money = _as_float(amount, "amount")
    end = int(np.asarray(calibration_end).astype("datetime64[D]").astype(np.int64))
    if not ids.shape == days.shape == money.shape:
        raise InvalidAnalyticsInput("customer_id, occurred_on and amount must have one length")
    keep = days <= end
    ids, days, money = ids[keep], days[keep], money[keep]
    unique_ids, customer = np.unique(ids, return_inverse=True)
    # One row per (customer, day), amounts summed.
    order = np.lexsort((days, customer))
    customer, days, money = customer[order], days[order], money[order]
    new_group = np.ones(customer.size, dtype=bool)
    new_group[1:] = (customer[1:] != customer[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_group)
    day_customer = customer[starts]
    day_date = days[starts]
    day_amount = np.add.reduceat(money, starts) if starts.size else money[:0]
    n_customers = unique_ids.size
    first_rows = np.searchsorted(day_customer, np.arange(n_customers), side="left")
    last_rows = np.searchsorted(day_customer, np.arange(n_customers), side="right") - 1
    purchase_days = np.bincount(day_customer, minlength=n_customers).astype(np.float64)
    total = np.bincount(day_customer, weights=day_amount, minlength=n_customers)
    first_day = day_date[first_rows]
    frequency = purchase_days - 1.0
    repeat_total = total - day_amount[first_rows]
    monetary = np.divide(repeat_total, frequency, out=np.zeros(n_customers), where=frequency > 0)
    return RfmSummary(
        customer_id=unique_ids,
        frequency=frequency,
        recency=(day_date[last_rows] - first_day) / time_unit_days,
        T=(end - first_day) / time_unit_days,
        monetary_value=monetary,
    )
