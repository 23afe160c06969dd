"""Statistics of the ablation report: Student-t intervals and paired tests, standard library only.

* ``t_cdf`` is the exact Student-t CDF for integer degrees of freedom ν (Abramowitz & Stegun 26.7.3,
  26.7.4: with θ = atan(t/√ν), ``A(t|ν) = P(|T| ≤ t)`` is a finite trigonometric series);
  ``t_quantile`` inverts it by bisection. Paired tests have integer ν = n − 1, so nothing else is
  needed (scipy is not a dependency; ``tests/unit/ablation`` checks both against textbook table values
  and, when installed, against mpmath's incomplete beta function).
* ``mean_ci``: mean ± t_{0.975, n−1} · s / √n (s = sample standard deviation, Bessel-corrected).
* ``paired_t``: the paired (one-sample) t-test of the differences, two-sided.
* ``sign_flip``: the exact sign-flip permutation test of the mean difference (Fisher's randomisation
  test for paired data; all 2ⁿ sign patterns up to ``exact_max`` = 2¹⁶, else a seeded Monte-Carlo
  sample with the +1 correction of Phipson & Smyth 2010). Its smallest attainable p-value is 2 / 2ⁿ:
  with 3 seeds 0.25, so it can never reject at α = 0.05 — ``PairedTest.min_p`` reports that bound.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass
from typing import Sequence


def t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with integer ``df`` ≥ 1 (exact finite series, A&S 26.7.3/26.7.4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:  # A = (2/π)[θ + sinθ (cosθ + (2/3)cos³θ + … + (2·4⋯(ν−3))/(1·3⋯(ν−2)) cos^{ν−2}θ)]
        term, series = c, c if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= c * c * (k - 1) / k
            series += term
        a = 2.0 / math.pi * (theta + s * series)
    else:  # A = sinθ [1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … + (1·3⋯(ν−3))/(2·4⋯(ν−2)) cos^{ν−2}θ]
        term = series = 1.0
        for k in range(2, df - 1, 2):
            term *= c * c * (k - 1) / k
            series += term
        a = s * series
    a = min(1.0, max(0.0, a))
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value P(|T| ≥ |t|)."""
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t (bisection on ``t_cdf`` to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """Mean of n values with a two-sided confidence interval (None bounds when n < 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean ± t_{(1+level)/2, n−1} · s/√n over ``values`` (Student interval)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_ci of no values")
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Interval(mean, None, None, len(xs))
    half = t_quantile((1 + level) / 2, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half, len(xs))


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired test of mean(d) = 0 over n paired differences d."""

    n: int
    mean_diff: float
    ci_low: float | None
    ci_high: float | None
    t: float | None
    p_t: float | None
    """Paired t-test p-value (None when n < 2)."""
    p_perm: float | None
    """Sign-flip permutation p-value (None when n < 1)."""
    min_p: float
    """Smallest p the sign-flip test can attain with n pairs (2 / 2ⁿ, exact case)."""


def paired_t(diffs: Sequence[float]) -> tuple[float | None, float | None]:
    """(t, two-sided p) of the paired t-test of ``diffs``; (None, None) when n < 2.

    All-equal non-zero differences have zero variance: t = ±inf, p = 0. All-zero: t = 0, p = 1.
    """
    d = [float(x) for x in diffs]
    if len(d) < 2:
        return None, None
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    if sd == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(len(d)))
    return t, t_two_sided_p(t, len(d) - 1)


def sign_flip(diffs: Sequence[float], *, exact_max: int = 16, draws: int = 20000, seed: int = 0) -> float | None:
    """Two-sided sign-flip permutation p-value of |mean(d)| (exact up to 2**exact_max patterns)."""
    d = [float(x) for x in diffs]
    if not d:
        return None
    observed = abs(sum(d)) - 1e-12 * (1.0 + sum(abs(x) for x in d))  # ties with the observed count as extreme
    if len(d) <= exact_max:
        hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed
                   for signs in itertools.product((1.0, -1.0), repeat=len(d)))
        return hits / 2 ** len(d)
    rng = random.Random(seed)
    hits = sum(abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= observed for _ in range(draws))
    return (hits + 1) / (draws + 1)


def paired_test(diffs: Sequence[float], level: float = 0.95) -> PairedTest:
    """Paired t-test, Student interval of the mean difference and the sign-flip test of ``diffs``."""
    d = [float(x) for x in diffs]
    ci = mean_ci(d, level) if d else Interval(math.nan, None, None, 0)
    t, p = paired_t(d)
    min_p = 2.0 / 2 ** len(d) if d and len(d) <= 16 else 0.0
    return PairedTest(n=len(d), mean_diff=ci.mean, ci_low=ci.low, ci_high=ci.high, t=t, p_t=p,
                      p_perm=sign_flip(d), min_p=min(1.0, min_p))
