"""`sampling.sample`: the point-mass shortcut (no draw for a one-token distribution) applies to
exact point masses only; a distribution that is merely peaked is still drawn from.

Power: 20,000 draws from (0.995, 0.005) give the rare token Binomial(20000, 0.005) times, mean
100, sd 10; the bounds 50..160 fail a correct sampler with probability below 1e-6 and reject
a sampler that never draws the rare token with certainty.
"""

from __future__ import annotations

import torch

from specbranch.sampling import make_generator, sample

DRAWS = 20_000


def test_a_point_mass_returns_its_token():
    probs = torch.zeros(50)
    probs[17] = 1.0
    assert sample(probs, make_generator(0, "verify")) == 17


def test_a_peaked_distribution_is_still_sampled():
    probs = torch.tensor([0.995, 0.005])
    generator = make_generator(0, "verify")
    rare = sum(sample(probs, generator) for _ in range(DRAWS))
    assert 50 <= rare <= 160
