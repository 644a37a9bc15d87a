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
