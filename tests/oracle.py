"""An enumerating oracle for decoding randomness: the exact output distribution of a generation.

The production code draws all its randomness through `sampling.sample` (a token from a
distribution) and `sampling.uniform` (a uniform compared with a threshold), from generators
made by `sampling.make_generator`. `Enumerator` stands in for those generators (it is a
`sampling.RandomSource`) and runs the generation once per combination of random outcomes,
depth first, replaying the choices made so far and branching at the first new one:

- `choice(probs)` branches over every token with probs > 0, weight probs[t] / sum(probs);
  (the run must be deterministic given its random outcomes: a replayed choice point that offers
  other outcomes than when it was first met is an error, and so is a total weight other than 1);
- `uniform()` returns a `SymbolicUniform`: it knows only the interval [lo, hi) it lies in.
  Each comparison `u < a` (or `u >= a`) splits the interval at a and branches over the two
  halves with weights proportional to their lengths. A uniform reused for a second test
  therefore keeps the interval its first test left: the correlation a reused uniform causes is
  enumerated exactly, and `reused` counts such second uses.

Every run's output is weighted by the product of its branch weights; the weights of all runs add
up to 1. Nothing is sampled, so the result is the method's exact output distribution (up to float
rounding of the probability rows).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Hashable

import torch

import specbranch.sampling


class SymbolicUniform:
    """A uniform on [0, 1) known only up to the interval its comparisons so far left it in."""

    def __init__(self, oracle: Enumerator) -> None:
        self.oracle, self.lo, self.hi, self.tests = oracle, 0.0, 1.0, 0

    def _below(self, threshold: float) -> bool:
        """The outcome of `u < threshold`, branching over both outcomes."""
        self.tests += 1
        self.oracle.tests += 1
        if self.tests > 1:
            self.oracle.reused += 1
        cut = min(max(float(threshold), self.lo), self.hi)
        width = self.hi - self.lo
        if self.oracle.choose([(cut - self.lo) / width, (self.hi - cut) / width]) == 0:
            self.hi = cut
            return True
        self.lo = cut
        return False

    def __lt__(self, threshold: float) -> bool:
        return self._below(threshold)

    def __le__(self, threshold: float) -> bool:  # differs from < on a set of measure zero
        return self._below(threshold)

    def __ge__(self, threshold: float) -> bool:
        return not self._below(threshold)

    def __gt__(self, threshold: float) -> bool:
        return not self._below(threshold)


class Enumerator:
    """Runs a function over every combination of random outcomes; see the module docstring.

    max_runs bounds the work (a test that needs more is mis-sized, and fails loudly).
    """

    def __init__(self, max_runs: int = 200_000) -> None:
        self.max_runs = max_runs
        self.arity: dict[tuple, int] = {}  # choice-point path -> its number of outcomes
        self.reused = 0
        self.runs = 0
        self.uniforms = 0  # uniforms drawn, over all runs
        self.tests = 0  # comparisons of a uniform with a threshold, over all runs

    def choose(self, weights: list[float]) -> int:
        """Index of the outcome this run takes; new choice points queue their other outcomes."""
        key = tuple(self.path[: self.pos])
        if self.arity.setdefault(key, len(weights)) != len(weights):
            raise AssertionError("the run is not deterministic given its random outcomes")
        if self.pos < len(self.path):
            index = self.path[self.pos]
        else:
            options = [i for i, w in enumerate(weights) if w > 0]
            index = options[0]
            self.todo.extend(self.path[: self.pos] + [other] for other in options[1:])
            self.path.append(index)
        self.pos += 1
        self.weight *= weights[index]
        return index

    # --- the RandomSource protocol -------------------------------------------------------

    def choice(self, probs: torch.Tensor) -> int:
        weights = probs.double()
        return self.choose((weights / weights.sum()).tolist())

    def uniform(self) -> SymbolicUniform:
        self.uniforms += 1
        return SymbolicUniform(self)

    # --- running ---------------------------------------------------------------------------

    def distribution(self, run: Callable[[], Hashable]) -> dict:
        """{output of run: its exact probability} over all random outcomes."""
        result: dict = defaultdict(float)
        self.todo: list[list[int]] = [[]]
        while self.todo:
            self.path, self.pos, self.weight = self.todo.pop(), 0, 1.0
            output = run()
            result[output] += self.weight
            self.runs += 1
            if self.runs > self.max_runs:
                raise AssertionError(f"more than {self.max_runs} random outcomes: make the case smaller")
        total = sum(result.values())
        if abs(total - 1.0) > 1e-9:
            raise AssertionError(f"the runs' weights add up to {total}, not 1: the run is not deterministic")
        return dict(result)


def install(monkeypatch, oracle: Enumerator) -> None:
    """Make every specbranch module's `make_generator` hand out `oracle` (all streams)."""
    original = specbranch.sampling.make_generator
    for name, module in list(sys.modules.items()):
        if name.startswith("specbranch") and getattr(module, "make_generator", None) is original:
            monkeypatch.setattr(module, "make_generator", lambda seed, stream, device="cpu": oracle)


def max_difference(got: dict, expected: dict) -> float:
    """Largest absolute difference between two {outcome: probability} dicts."""
    return max(abs(got.get(k, 0.0) - expected.get(k, 0.0)) for k in set(got) | set(expected))
