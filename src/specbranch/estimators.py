"""Rates learnt within a request: the one estimator every adaptive choice uses.

`AcceptanceRate` estimates a probability from the request's own rounds: `tests` events, `hits`
successes, both decaying by `decay` per round so the estimate follows the text (code, prose,
a copied span that starts and ends), with a Laplace prior of one success in `prior` tests:
rate = (hits + 1) / (tests + prior). Prior 2 is one success and one failure (a probability
that starts at 1/2); prior 1 makes hits / tests a ratio that starts at 1 (`Calibration.beta`:
accepted children over the draft's predicted acceptances).

`Calibration` is how the draft's probabilities turn into the target's acceptances in a tree
round (`decoders/tree.py`); prompt lookup's gates are AcceptanceRates of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AcceptanceRate:
    """A decaying Laplace estimate (module docstring)."""

    tests: float = 0.0
    hits: float = 0.0
    decay: float = 0.9
    prior: float = 2.0

    @property
    def rate(self) -> float:
        return (self.hits + 1.0) / (self.tests + self.prior)

    def learn(self, tests: float, hits: float) -> None:
        """One round's tests and hits."""
        self.tests = self.decay * self.tests + tests
        self.hits = self.decay * self.hits + hits


@dataclass
class Calibration:
    """How the draft's probabilities turn into the target's acceptances, learnt in a request.

    At every tree node the walk tested, the draft predicted that one of its children would be
    accepted with probability sum(q of the children) (capped at 1). `step` learns how often a
    tested node had a child accepted (the guess for a level not drafted yet, `step_acceptance`);
    `beta` learns accepted children over predicted acceptances, so a node's calibrated
    conditional acceptance is min(1, beta * q).
    """

    step: AcceptanceRate = field(default_factory=AcceptanceRate)
    beta: AcceptanceRate = field(default_factory=lambda: AcceptanceRate(prior=1.0))

    @property
    def step_acceptance(self) -> float:
        return self.step.rate

    def accept(self, q: float) -> float:
        """Calibrated probability that a child the draft gives probability q is accepted."""
        return min(1.0, self.beta.rate * q)

    def learn(self, tests: list[tuple[float, bool]]) -> None:
        """One round's tests: (the draft's predicted acceptance, whether a child was accepted)."""
        hits = sum(hit for _, hit in tests)
        self.step.learn(len(tests), hits)
        self.beta.learn(sum(min(1.0, q) for q, _ in tests), hits)
