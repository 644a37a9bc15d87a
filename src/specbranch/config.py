"""Configuration dataclasses shared by the library, the CLI, the benchmark and the server.

Terms:
- *sampling parameters* define the processed next-token distribution (see `sampling.py`) that
  draft and target both use; the lossless guarantee is with respect to the processed target
  distribution.
- *generation config* adds what ends a generation (token budget, stop strings) and the seed of
  the per-request random generators.
- *speculative config* holds the knobs of the speculative methods; they change speed only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from specbranch.errors import SpecBranchError
from specbranch.policies import describe as describe_policies
from specbranch.policies import parse_policy

DraftSampling = Literal["greedy", "sample"]
Execution = Literal["auto", "parallel", "serial"]
Lookup = Literal["auto", "on", "off"]
LOOKUP_DEFAULTS = {"specbranch": "auto", "sd": "off"}  # --lookup when not given (sd: classic SD)
DEFAULT_TREE_DEPTH = 24  # serial SpecBranch: most tree levels D when --max-draft-len is not given


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line help (the CLI builds its options from these).

    cli: extra argparse settings (metavar, flag); `methods` limits a parallel option to the named
    methods; `cli=False` keeps a field off the command line.
    """
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class SamplingParams:
    """How logits become the next-token distribution.

    temperature: 0 means greedy (the distribution is one-hot on the argmax).
    top_k: keep the k most likely tokens (0 = off).
    top_p: keep the smallest set of most likely tokens whose mass reaches top_p (1.0 = off).
    """

    temperature: float = option(0.0, "0 = greedy")
    top_k: int = option(0, "keep the k most likely tokens (0 = off)")
    top_p: float = option(1.0, "nucleus sampling mass in (0, 1] (1 = off)")

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, int | float) or math.isnan(self.temperature):
            raise SpecBranchError(f"temperature must be a number, got {self.temperature!r}")
        if self.temperature < 0:
            raise SpecBranchError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise SpecBranchError(f"top_k must be a whole number >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.top_p, int | float) or not (0.0 < self.top_p <= 1.0):
            raise SpecBranchError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        """True when the processed distribution is one-hot on the argmax."""
        return self.temperature == 0 or self.top_k == 1


@dataclass(frozen=True)
class SpeculativeConfig:
    """Knobs of the speculative methods (speed only; never the output distribution).

    gamma: draft length per round for SD (and the initial block for PEARL).
    draft_sampling: "sample" drafts x ~ q and verifies with rule 1 (needs q rows);
        "greedy" drafts argmax q and verifies with rule 2 (needs only token ids).
    draft_policy: a draft-length policy spec (`specbranch.policies`, e.g. "adaedl" or
        "svip:threshold=0.5"); None = the method's own: fixed gamma for SD, the PEARL schedule,
        the measured cost length c for SpecBranch.
    """

    gamma: int = option(4, "draft length per round for sd")
    draft_sampling: DraftSampling = option(
        "sample",
        "sample: draft x ~ q, verified by rule 1 (roots: k samples, rule 4); greedy: draft argmax q, "
        "verified by rule 2 (roots: draft top-k, rule 3); at temperature 0 both are the greedy rules",
    )
    draft_policy: str | None = option(
        None,
        f"draft-length policy: {describe_policies()}. Default: the method's own (sd: fixed; pearl: its "
        "schedule; specbranch: cost). For pearl/specbranch it runs on the draft side under the method's cap",
        metavar="NAME[:OPT=V,...]",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.gamma, int) or self.gamma < 1:
            raise SpecBranchError(f"gamma (draft length) must be a whole number >= 1, got {self.gamma!r}")
        if self.draft_sampling not in ("greedy", "sample"):
            raise SpecBranchError(f"draft_sampling must be 'greedy' or 'sample', got {self.draft_sampling!r}")
        if self.draft_policy is not None:
            parse_policy(self.draft_policy)


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate and when to stop.

    max_new_tokens: hard cap on generated tokens.
    seed: seeds the per-request generators (verification and draft sampling use separate ones).
    stop: strings that end the generation; the returned text ends before the stop string.
    ignore_eos: keep generating past EOS (benchmarks use it for fixed-length runs).
    """

    max_new_tokens: int = option(128, "tokens to generate at most")
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = option(0, "seed of the per-request random generators")
    stop: tuple[str, ...] = option((), "stop string (repeatable); the output ends before it", cli=False)
    ignore_eos: bool = option(False, "always generate max_new_tokens tokens (fixed length)", cli=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise SpecBranchError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.seed, int):
            raise SpecBranchError(f"seed must be an integer, got {self.seed!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise SpecBranchError("stop strings must be non-empty strings")


@dataclass(frozen=True)
class ParallelConfig:
    """Options of the parallel methods (PEARL, SpecBranch); speed only, never the output.

    inline: run draft and target one after the other in this process (the reference; same
        tokens as the two-process mode for the same seed and draft lengths).
    k_max: most branches at a branch point; epsilon: draft confidence below which a branch
        stops (SpecBranch only).
    max_draft_len: branch length (PEARL: initial block); None = the measured cost ratio c.
        In serial execution: the tree's most levels D (None: DEFAULT_TREE_DEPTH).
    execution: how SpecBranch runs (see the field's help; "auto" compares the predicted
        throughputs, `costs.choose_execution`); tree_nodes: the serial tree's most nodes N.
    draft_threads / target_threads: torch threads of the draft worker and of the caller (the
        target side); None = half the cores each (one each on a 2-core machine).
    draft_device: device of the draft worker (None = where the draft model is).
    master_addr / master_port: rendezvous of the two processes (port 0 = any free port).
    worker_timeout: seconds a reply from the draft worker may take before it counts as hung.
    hrad: H-RAD predictor (SpecBranch only): a predictor file, "auto" (the default: the one
        shipped for a built-in pair, off for other pairs) or None / "none" (off: keep branches
        cut at epsilon). A predictor acts only in the decoding modes it was trained for
        (`PredictorMeta.modes`; the shipped one: greedy, see benchmarks/RESULTS.md).
    """

    execution: Execution = option(
        "auto",
        "specbranch: parallel = draft and target at the same time, branches drafted by a worker process "
        "(pays where each model has its own device); serial = one token tree drafted, then verified in "
        "one target forward (pays where they share one: a forward over 8-16 tokens costs about what 2-4 "
        "do); auto = the one the measured cost curves predict faster on this placement",
        methods=("specbranch",),
    )
    tree_nodes: int = option(
        64,
        "specbranch serial: most drafted tokens in one tree (N); each round's tree is sized below it by the "
        "measured cost curves",
        methods=("specbranch",),
    )
    lookup: Lookup | None = option(
        None,
        "prompt-lookup candidates (continuations of the context's last tokens where they occurred "
        "before): specbranch serial joins them to each tree as extra deterministic branches, sd opens "
        "its draft block with them; auto = as many as their observed acceptance (and for specbranch the "
        "measured costs) say pay, on = always, off = never (default: "
        + ", ".join(f"{k} for {m}" for m, k in LOOKUP_DEFAULTS.items())
        + ")",
        methods=tuple(LOOKUP_DEFAULTS),
    )
    inline: bool = option(
        False,
        "run draft and target one after the other in this process instead of a draft worker process "
        "(same tokens for the same seed; slower; the fallback for a single device)",
    )
    k_max: int = option(
        4,
        "specbranch: most branches at a branch point, k = max(1, floor(k_max * (1 - draft confidence)))",
        methods=("specbranch",),
    )
    epsilon: float = option(
        0.2,
        "specbranch: a branch stops at its first position with draft confidence below this",
        methods=("specbranch",),
    )
    max_draft_len: int | None = option(
        None,
        "branch length (pearl: initial block, grows to 2x while accepted) (default: the measured cost "
        "ratio c = target verify time / draft step time); specbranch serial: the tree's most levels D "
        f"(default {DEFAULT_TREE_DEPTH}; each round's tree is sized below it by the measured cost curves)",
    )
    draft_threads: int | None = option(None, "torch threads of the draft worker (default: half the cores)")
    target_threads: int | None = option(
        None, "torch threads of the target side (default: the other half)"
    )
    draft_device: str | None = option(None, "device of the draft worker", cli=False)
    master_addr: str = option("127.0.0.1", "rendezvous address of the two processes")
    master_port: int = option(0, "rendezvous port (0: any free port)")
    worker_timeout: float = option(
        60.0, "seconds a draft worker may take to answer before it counts as hung"
    )
    hrad: str | None = option(
        "auto",
        "specbranch: H-RAD predictor file (from `specbranch hrad train`) deciding after each verification "
        "how much of the surviving branch to keep; 'auto' = the predictor shipped for a built-in pair "
        "(off for other pairs), 'none' = off (the shipped predictor acts at greedy decoding only, where it "
        "pays)",
        methods=("specbranch",),
        metavar="PREDICTOR",
    )

    def __post_init__(self) -> None:
        if self.hrad is not None and (not isinstance(self.hrad, str) or not self.hrad):
            raise SpecBranchError(f"hrad must be a predictor file, 'auto' or 'none', got {self.hrad!r}")
        if not isinstance(self.k_max, int) or self.k_max < 1:
            raise SpecBranchError(f"k_max must be a whole number >= 1, got {self.k_max!r}")
        if not isinstance(self.epsilon, int | float) or not 0.0 <= self.epsilon < 1.0:
            raise SpecBranchError(f"epsilon must be in [0, 1), got {self.epsilon!r}")
        if self.execution not in ("auto", "parallel", "serial"):
            raise SpecBranchError(f"execution must be 'auto', 'parallel' or 'serial', got {self.execution!r}")
        if self.lookup not in (None, "auto", "on", "off"):
            raise SpecBranchError(f"lookup must be 'auto', 'on' or 'off', got {self.lookup!r}")
        if not isinstance(self.tree_nodes, int) or self.tree_nodes < 1:
            raise SpecBranchError(f"tree_nodes must be a whole number >= 1, got {self.tree_nodes!r}")
        for name in ("max_draft_len", "draft_threads", "target_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpecBranchError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.worker_timeout, int | float) or self.worker_timeout <= 0:
            raise SpecBranchError(f"worker_timeout must be > 0 seconds, got {self.worker_timeout!r}")
        if not isinstance(self.master_port, int) or not 0 <= self.master_port < 65536:
            raise SpecBranchError(f"master_port must be in [0, 65535], got {self.master_port!r}")


def applies_to(config_field: Any, method: str) -> bool:
    """Whether a `ParallelConfig` field is an option of `method`: the methods its metadata
    names, by default the parallel ones (pearl, specbranch)."""
    return method in config_field.metadata.get("methods", ("pearl", "specbranch"))
