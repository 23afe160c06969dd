"""Ablation statistics against values we did not compute with this code: textbook t-table quantiles,
closed forms of the t CDF (ν = 1 Cauchy, ν = 2), hand-counted sign-flip p-values, mpmath's regularised
incomplete beta function, and the false-positive rate of the paired t-test on simulated null data."""

import math
import random

import pytest

from megatron_lwz.ablation.stats import mean_ci, paired_t, paired_test, sign_flip, t_cdf, t_quantile, t_two_sided_p

# t_{0.975, ν} from any printed t table (e.g. Student's table in Montgomery, Applied Statistics, App. IV).
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042}


@pytest.mark.parametrize("df,quantile", sorted(TABLE_975.items()))
def test_quantiles_match_the_t_table(df, quantile):
    assert t_quantile(0.975, df) == pytest.approx(quantile, abs=5e-4)
    assert t_two_sided_p(quantile, df) == pytest.approx(0.05, abs=2e-4)
    assert t_quantile(0.025, df) == pytest.approx(-quantile, abs=5e-4)


def test_cdf_closed_forms():
    for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 25.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-14)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-14)
    assert t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-15)
    assert t_cdf(0.0, 7) == 0.5
    with pytest.raises(ValueError):
        t_cdf(1.0, 2.5)


def test_cdf_against_mpmath_incomplete_beta():
    mpmath = pytest.importorskip("mpmath")
    for df in (1, 2, 3, 4, 7, 12, 31, 64):
        for t in (0.1, 0.9, 2.2, 5.0):
            p = float(mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True))  # P(|T| ≥ t)
            assert t_two_sided_p(t, df) == pytest.approx(p, abs=1e-12)


def test_paired_test_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), se = s/2, t = 3.8730; p(ν=3) = 0.030466 (mpmath);
    # CI = 2.5 ± 3.18245 · 0.645497 = [0.44574, 4.55426].
    result = paired_test([1, 2, 3, 4])
    assert result.t == pytest.approx(2.5 / (math.sqrt(5 / 3) / 2), rel=1e-12)
    assert result.p_t == pytest.approx(0.0304663, abs=1e-6)
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.44574, abs=1e-4), pytest.approx(4.55426, abs=1e-4))
    # sign flips: |Σ ±d| ≥ 10 only for all-plus and all-minus → 2 of 16 patterns.
    assert result.p_perm == 2 / 16 and result.min_p == 2 / 16
    assert mean_ci([1, 2, 3, 4]).low == pytest.approx(result.ci_low)


def test_sign_flip_hand_counts_and_edge_cases():
    assert sign_flip([1, 1, 1]) == 2 / 8          # ties with the observed sum count: ±(1+1+1)
    assert sign_flip([1, -1]) == 1.0              # every pattern is at least as extreme as 0
    assert sign_flip([3, 1]) == 2 / 4             # |±3 ± 1| ≥ 4 for (+,+) and (−,−)
    assert sign_flip([]) is None
    assert sign_flip([0.5] * 20) < 1e-3           # Monte Carlo branch (2^20 > 2^16): (0 + 1) / (20000 + 1)
    assert sign_flip([0.5, -0.4] * 10) > 0.5


def test_degenerate_inputs():
    assert paired_t([2.0]) == (None, None)
    assert paired_t([0.0, 0.0, 0.0]) == (0.0, 1.0)
    assert paired_t([0.3, 0.3, 0.3]) == (math.inf, 0.0)
    single = mean_ci([0.7])
    assert single.mean == 0.7 and single.low is None


def test_paired_t_false_positive_rate_is_alpha():
    """2,000 null data sets of 3 and of 10 normal differences: the share with p < 0.05 is 0.05 ± 3 binomial sd."""
    rng = random.Random(14)
    for n in (3, 10):
        rejections = sum(paired_t([rng.gauss(0.0, 1.0) for _ in range(n)])[1] < 0.05 for _ in range(2000))
        assert 0.035 <= rejections / 2000 <= 0.065, (n, rejections)
