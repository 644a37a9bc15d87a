"""Chi-square goodness of fit for the distribution tests (fixed seeds, so never flaky)."""

from __future__ import annotations

from collections import Counter

from scipy.stats import chi2


def chi_square_pvalue(counts: Counter, expected_probs: dict, n: int, min_expected: float = 5.0) -> float:
    """p-value of observed counts against exact probabilities; rare cells are pooled."""
    observed_unexpected = sum(c for k, c in counts.items() if expected_probs.get(k, 0.0) == 0.0)
    assert observed_unexpected == 0, f"outcomes with zero target probability were produced: {counts}"
    stat, cells, pool_obs, pool_exp = 0.0, 0, 0.0, 0.0
    for key, prob in expected_probs.items():
        exp, obs = prob * n, counts.get(key, 0)
        if exp < min_expected:
            pool_obs, pool_exp = pool_obs + obs, pool_exp + exp
            continue
        stat += (obs - exp) ** 2 / exp
        cells += 1
    if pool_exp > 0:
        stat += (pool_obs - pool_exp) ** 2 / pool_exp
        cells += 1
    return float(chi2.sf(stat, max(cells - 1, 1)))


def chi_square_critical(cells: int, alpha: float = 1e-3) -> float:
    """The chi-square statistic above which a test over `cells` cells rejects at level alpha."""
    return float(chi2.isf(alpha, cells - 1))


def detectable_tv(n: int, cells: int, alpha: float = 1e-3, power: float = 0.9) -> float:
    """The smallest total-variation distance a chi-square test over `cells` cells and n samples
    detects with the given power at level alpha, whatever the shape of the deviation.

    Against an alternative at TV distance d, the statistic is noncentral chi-square with
    noncentrality n * sum((q_i - p_i)^2 / p_i) >= 4 n d^2 (the minimum, reached when the
    deviation moves mass d between two halves of the probability mass). So d is detectable when
    the noncentral chi-square with noncentrality 4 n d^2 exceeds the critical value with
    probability >= power.
    """
    from scipy.optimize import brentq
    from scipy.stats import ncx2

    critical = chi_square_critical(cells, alpha)
    noncentrality = brentq(lambda lam: ncx2.sf(critical, cells - 1, lam) - power, 1e-6, 1e4)
    return (noncentrality / (4 * n)) ** 0.5
