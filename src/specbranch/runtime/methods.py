"""The registry of decoding methods: one `MethodInfo` each, read by the CLI (`--method`
choices and which options apply), the benchmark's `NAME[:k=v]` variants, the server and
`build_decoder`. Adding a method is its decoder module plus one entry in `REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

from specbranch.config import ParallelConfig, SpeculativeConfig, applies_to
from specbranch.decoders.base import Decoder
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair
from specbranch.policies import needs_cost
from specbranch.runtime import assembly

CostProbe = Literal["never", "policy", "always"]


@dataclass(frozen=True)
class MethodInfo:
    """A decoding method as the registry knows it.

    build(pair, spec, config, probe): its decoder; probe says whether to measure the cost ratio c.
    needs_draft: whether it runs a draft model. parallel: whether it takes `ParallelConfig`
    options (those whose field metadata names it, `config.applies_to`).
    cost_probe: when it measures c: never, when its draft-length policy needs it ("policy"),
    or always (the parallel methods size their branches by it).
    """

    name: str
    summary: str
    build: Callable[[ModelPair, SpeculativeConfig, ParallelConfig, bool], Decoder]
    needs_draft: bool = True
    parallel: bool = False
    cost_probe: CostProbe = "never"

    @property
    def options(self) -> tuple[str, ...]:
        """The `ParallelConfig` fields this method takes (engine keyword options): the parallel
        methods' shared ones and those whose metadata names the method (`lookup` for sd)."""
        return tuple(f.name for f in fields(ParallelConfig) if applies_to(f, self.name))

    def needs_cost_probe(self, spec: SpeculativeConfig) -> bool:
        """Whether building it for `spec` measures the cost ratio c."""
        return self.cost_probe == "always" or (self.cost_probe == "policy" and needs_cost(spec.draft_policy))


REGISTRY: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("ar", "autoregressive decoding, the reference", assembly.build_ar, needs_draft=False),
        MethodInfo("sd", "classic speculative decoding", assembly.build_sd, cost_probe="policy"),
        MethodInfo(
            "lookup", "prompt lookup: candidates copied from the context, no draft model",
            assembly.build_lookup, needs_draft=False,
        ),
        MethodInfo(
            "pearl", "draft and target at once, adaptive block", assembly.build_pearl, True, True, "always"
        ),
        MethodInfo(
            "specbranch",
            "parallel branches at likely rejections, H-RAD",
            assembly.build_specbranch,
            True,
            True,
            "always",
        ),
    )
}
METHODS = tuple(REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The registry entry of a method name, or a clear error."""
    if name not in REGISTRY:
        raise SpecBranchError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return REGISTRY[name]


def build_decoder(pair: ModelPair, method: str, spec: SpeculativeConfig, **options: object) -> Decoder:
    """The decoder for `method` on `pair`; options are the `ParallelConfig` fields it takes."""
    info = method_info(method)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise SpecBranchError(f"method {method!r} takes no options {unknown}")
    if info.needs_draft and pair.draft is None:
        raise SpecBranchError(f"method {method!r} needs a draft model")
    return info.build(pair, spec, ParallelConfig(**options), info.needs_cost_probe(spec))
