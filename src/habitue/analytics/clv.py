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
from scipy.special import betaln, digamma, gammaln, hyp2f1

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


def _minimise(
    objective: Callable[[FloatArray], tuple[float, FloatArray]], start: FloatArray
) -> FloatArray:
    """Minimise on log-parameters with BFGS and the analytic gradient.

    Plain BFGS (NumPy on a 3- or 4-vector) rather than L-BFGS-B, whose Fortran-style routine
    goes through the BLAS for every step and is slowed by BLAS threads on a busy machine. The
    objective is divided by its size at the start, so the tolerance does not depend on how many
    customers there are.
    """
    scale = 1.0 / max(abs(objective(start)[0]), 1.0)

    def scaled(log_params: FloatArray) -> tuple[float, FloatArray]:
        value, gradient = objective(log_params)
        return value * scale, gradient * scale

    result = minimize(scaled, start, jac=True, method="BFGS", options={"gtol": 1e-9})
    solution: FloatArray = np.asarray(result.x, dtype=np.float64)
    return solution


def _dot(weights: FloatArray, values: FloatArray) -> float:
    """Weighted sum without the BLAS (whose threads make a 20,000-term dot product take
    tens of milliseconds on a busy machine, against a fraction of one here)."""
    return float(np.add.reduce(weights * values))


def _unique_rows(*columns: FloatArray) -> tuple[tuple[FloatArray, ...], FloatArray]:
    """Distinct rows of the columns and how many times each occurs (the fits' weights).

    Customers with the same history contribute the same likelihood term: most of a cohort has
    no repeat purchase and one of a few ages, so the fits evaluate far fewer terms.
    """
    order = np.lexsort(columns[::-1])
    ordered = tuple(c[order] for c in columns)
    new_row = np.zeros(order.size, dtype=bool)
    new_row[:1] = True
    for c in ordered:
        new_row[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new_row)
    counts = np.diff(np.append(starts, order.size)).astype(np.float64)
    return tuple(c[starts] for c in ordered), counts


def _bgnbd_start(x: FloatArray, t_cal: FloatArray, w: FloatArray) -> FloatArray:
    """A start near the optimum: the purchase rate's mean and variance by moments, a = 1, b = 2."""
    n = float(np.sum(w))
    rate = (x + 1.0) / np.maximum(t_cal, 1e-9)
    mean = float(np.sum(w * rate) / n)
    variance = float(np.sum(w * (rate - mean) ** 2) / n) or mean
    r = min(max(mean * mean / variance, 0.05), 20.0)
    alpha = r / max(mean, 1e-9)
    start: FloatArray = np.log(np.array([r, alpha, 1.0, 2.0]))
    return start


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters for the customers given (all must be valid).

    The log-likelihood is summed over distinct (x, t_x, T) rows weighted by their counts, and
    minimised with its analytic gradient (digamma terms) on log-parameters.
    """
    x_all, t_x_all, t_cal_all = _rfm_arrays(frequency, recency, T)
    if x_all.size == 0:
        raise ModelNotFitted("BG/NBD needs at least one customer")
    if not np.any(x_all > 0):
        raise ModelNotFitted("BG/NBD needs at least one repeat purchase")
    (x, t_x, t_cal), w = _unique_rows(x_all, t_x_all, t_cal_all)
    repeat = x > 0
    b_shift = np.where(repeat, x - 1.0, 0.0)
    safe_t_x = np.where(repeat, t_x, 1.0)

    # Special functions only over the distinct repeat counts (a few dozen values), spread back.
    counts, x_of = np.unique(x, return_inverse=True)

    def negative_ll(log_params: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(np.clip(log_params, -30.0, 30.0))
        rx = r + x
        log_alpha_t = np.log(alpha + t_cal)
        log_alpha_tx = np.log(alpha + safe_t_x)
        log_a_by_x = (
            gammaln(r + counts)
            - gammaln(r)
            + gammaln(b + counts)
            - gammaln(b)
            - gammaln(a + b + counts)
            + gammaln(a + b)
        )
        log_a = log_a_by_x[x_of] + r * np.log(alpha)
        log_b = -rx * log_alpha_t
        log_c = np.where(repeat, np.log(a) - np.log(b + b_shift) - rx * log_alpha_tx, -np.inf)
        log_bc = np.logaddexp(log_b, log_c)
        total = _dot(w, log_a + log_bc)
        if not np.isfinite(total):
            return 1e300, np.zeros(4)
        share_b = np.exp(log_b - log_bc)
        share_c = 1.0 - share_b
        psi_ab = digamma(a + b)
        psi_abx = digamma(a + b + counts)
        d_r_by_x = digamma(r + counts) - digamma(r)
        d_b_by_x = digamma(b + counts) - digamma(b) + psi_ab - psi_abx
        d_r = d_r_by_x[x_of] + np.log(alpha) - share_b * log_alpha_t - share_c * log_alpha_tx
        d_alpha = r / alpha - share_b * rx / (alpha + t_cal) - share_c * rx / (alpha + safe_t_x)
        d_a = (psi_ab - psi_abx)[x_of] + share_c / a
        d_b = d_b_by_x[x_of] - share_c / (b + b_shift)
        gradient = np.array(
            [_dot(w, d_r) * r, _dot(w, d_alpha) * alpha, _dot(w, d_a) * a, _dot(w, d_b) * b]
        )
        return -total, -gradient

    solution = _minimise(negative_ll, _bgnbd_start(x, t_cal, w))
    r, alpha, a, b = (float(v) for v in np.exp(solution))
    return BgNbdParams(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=-negative_ll(solution)[0],
        n_customers=int(x_all.size),
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
    (x, m), w = _unique_rows(x, m)
    log_m = np.log(m)
    log_x = np.log(x)
    xm = x * m
    counts, x_of = np.unique(x, return_inverse=True)

    def negative_ll(log_params: FloatArray) -> tuple[float, FloatArray]:
        p, q, gamma = np.exp(np.clip(log_params, -30.0, 30.0))
        px = p * x
        pc = p * counts  # the special functions only over the distinct repeat counts
        log_gxm = np.log(gamma + xm)
        ll = (
            (gammaln(pc + q) - gammaln(pc))[x_of]
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1.0) * log_m
            + px * log_x
            - (px + q) * log_gxm
        )
        total = _dot(w, ll)
        if not np.isfinite(total):
            return 1e300, np.zeros(3)
        psi_pxq = digamma(pc + q)[x_of]
        d_p = x * (psi_pxq - digamma(pc)[x_of] + log_m + log_x - log_gxm)
        d_q = psi_pxq - digamma(q) + np.log(gamma) - log_gxm
        d_gamma = q / gamma - (px + q) / (gamma + xm)
        gradient = np.array([_dot(w, d_p) * p, _dot(w, d_q) * q, _dot(w, d_gamma) * gamma])
        return -total, -gradient

    # A start in the usual range (p and q of a few units) with γ on the scale of the spend.
    mean_m = _dot(w, m) / float(np.sum(w))
    start = np.log(np.array([2.0, 3.0, mean_m]))
    solution = _minimise(negative_ll, start)
    p, q, gamma = (float(v) for v in np.exp(solution))
    return GammaGammaParams(
        p=p,
        q=q,
        gamma=gamma,
        log_likelihood=-negative_ll(solution)[0],
        n_customers=int(np.sum(w)),
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
