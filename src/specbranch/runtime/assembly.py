"""Builders: each method's decoder assembled on a model pair.

Everything the algorithms leave to their caller happens here: the backends that run the
models (`runtime.backends`), the thread split between the target side and the draft worker,
the draft worker process (or the inline drafter), the cost probe (c = target verify time /
draft step time, `specbranch.probe`), the cost curves that size trees and choose SpecBranch's
execution (`runtime.placement`) and the H-RAD keeper a `--hrad` spec names.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from specbranch.backends.base import Backend, KVSequence
from specbranch.config import DEFAULT_TREE_DEPTH, LOOKUP_DEFAULTS, ParallelConfig, SpeculativeConfig
from specbranch.costs import Placement, choose_execution
from specbranch.decoders.ar import AutoregressiveDecoder
from specbranch.decoders.branch_policies import PearlPolicy, SpecBranchPolicy
from specbranch.decoders.drafter import BranchDrafter
from specbranch.decoders.lookup import LookupDecoder
from specbranch.decoders.parallel import BranchKeeper, BranchPolicy, ParallelDecoder
from specbranch.decoders.sd import SpeculativeDecoder
from specbranch.decoders.tree import TreeDecoder
from specbranch.decoders.tree_round import TreeLimits
from specbranch.errors import SpecBranchError
from specbranch.hrad.keeper import PredictorKeeper
from specbranch.hrad.predictor import Predictor
from specbranch.models import ModelPair
from specbranch.policies import build_policy
from specbranch.probe import VERIFY_TOKENS, CostRatio, forward_seconds
from specbranch.runtime.backends import model_backend, pair_backends
from specbranch.runtime.placement import placement_costs
from specbranch.transport.inline import InlineLink
from specbranch.transport.messages import DraftLink
from specbranch.transport.process import WorkerLink, WorkerOptions


def build_ar(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, probe: bool
) -> AutoregressiveDecoder:
    """AR: the target alone."""
    return AutoregressiveDecoder(pair_backends(pair)[0])


def build_lookup(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, probe: bool
) -> LookupDecoder:
    """Prompt lookup: the target alone, candidates copied from the context."""
    return LookupDecoder(pair_backends(pair)[0], pair.max_length)


def build_sd(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, probe: bool
) -> SpeculativeDecoder:
    """SD: both models in this process; the draft-length policy's cap is c when it needs one."""
    target, draft = pair_backends(pair)
    cap = spec.gamma
    if probe:
        times = forward_seconds(KVSequence(target), VERIFY_TOKENS), forward_seconds(KVSequence(draft), 1)
        cap = CostRatio(*times).draft_length
    policy = build_policy(spec.draft_policy or "fixed", spec.gamma, cap)
    lookup = config.lookup or LOOKUP_DEFAULTS["sd"]
    return SpeculativeDecoder(target, draft, spec, pair.max_length, pair.eos_ids, policy, lookup)


def build_pearl(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, probe: bool
) -> ParallelDecoder:
    """PEARL: one branch, its block length adapting to acceptance."""
    return build_parallel(pair, "pearl", spec, config, probe=probe)


def build_specbranch(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, probe: bool
) -> ParallelDecoder | TreeDecoder:
    """SpecBranch: branches drafted while the target verifies (execution "parallel", with the
    H-RAD keeper `config.hrad` names), or a token tree verified in one target forward ("serial");
    "auto" picks the one the measured cost curves predict faster (`costs.choose_execution`).
    The curves also size the serial trees; without a probe the trees fill N and D. On a backend
    whose draft cannot go to a worker process (llama.cpp) "auto" is serial."""
    execution = config.execution
    costs = placement_costs(pair, *_shares(config)) if probe and execution != "parallel" else None
    workers = pair_backends(pair)[1].capabilities.processes or config.inline
    if execution == "auto":
        execution = choose_execution(costs, _tree_depth(config)) if costs and workers else "serial"
    if execution == "serial":
        return build_tree(pair, spec, config, costs)
    return build_parallel(pair, "specbranch", spec, config, resolve_keeper(config.hrad, pair), probe)


def _tree_depth(config: ParallelConfig) -> int:
    return config.max_draft_len or DEFAULT_TREE_DEPTH


def build_tree(
    pair: ModelPair, spec: SpeculativeConfig, config: ParallelConfig, costs: Placement | None = None
) -> TreeDecoder:
    """SpecBranch, serial execution: both models in this process, one tree per round, sized by
    the measured serial cost curves when given."""
    depth = _tree_depth(config)
    curves = (costs.target, costs.draft) if costs else (None, None)
    correct = costs is None or costs.correct
    limits = TreeLimits(config.tree_nodes, depth, config.k_max, *curves, correct=correct)
    policy = build_policy(spec.draft_policy, spec.gamma, depth) if spec.draft_policy else None
    target, draft = pair_backends(pair)
    return TreeDecoder(
        target, draft, spec.draft_sampling, limits, pair.max_length, pair.eos_ids, policy,
        config.lookup or LOOKUP_DEFAULTS["specbranch"],
    )


HRAD_OFF = (None, "none", "off")


def shipped_predictor(pair_name: str) -> Path | None:
    """The H-RAD predictor shipped for a built-in pair (`specbranch/data/hrad/NAME.pt`), if any."""
    path = Path(str(resources.files("specbranch") / "data" / "hrad" / f"{pair_name}.pt"))
    return path if path.is_file() else None


def resolve_keeper(spec: str | None, pair: ModelPair) -> PredictorKeeper | None:
    """The keeper for `--hrad SPEC`: a predictor file, "auto" (the shipped one for a built-in
    pair, none otherwise; none on a backend that keeps no hidden states) or "none"."""
    if spec in HRAD_OFF:
        return None
    if not pair_backends(pair)[0].capabilities.hidden_states:
        if spec == "auto":
            return None
        raise SpecBranchError(f"H-RAD reads the target's hidden states, which the {pair.backend} backend "
                              "does not keep: use --backend torch, or --hrad none")
    path = shipped_predictor(pair.name) if spec == "auto" else Path(spec)
    if path is None:
        return None
    return PredictorKeeper(Predictor.load(path, pair))


def _shares(config: ParallelConfig) -> tuple[int, int]:
    """Torch threads of the target side and of the draft worker in the parallel mode: as
    configured, else half the cores each."""
    cores = os.cpu_count() or 2
    draft_threads = config.draft_threads or max(1, cores // 2)
    return config.target_threads or max(1, cores - draft_threads), draft_threads


def _link(pair: ModelPair, config: ParallelConfig, target: Backend) -> DraftLink:
    """The draft side: an inline drafter, or a worker process on its share of the threads."""
    target_threads, draft_threads = _shares(config)
    if config.inline:
        if config.target_threads:
            torch.set_num_threads(config.target_threads)
        draft_model = pair.draft if config.draft_device is None else pair.draft.to(config.draft_device)
        drafter = BranchDrafter(KVSequence(model_backend(draft_model, pair.vocab_size)), pair.eos_ids)
        return InlineLink(drafter)
    if not pair_backends(pair)[1].capabilities.processes:
        raise SpecBranchError(f"a draft worker process runs transformers models, not the {pair.backend} "
                              "backend's: use --inline, --execution serial or --backend torch")
    options = WorkerOptions(
        threads=draft_threads,
        device=config.draft_device,
        master_addr=config.master_addr,
        master_port=config.master_port,
        timeout=config.worker_timeout,
    )
    torch.set_num_threads(target_threads)
    return WorkerLink(pair.draft, pair.vocab_size, pair.eos_ids, options, target.device)


def build_parallel(
    pair: ModelPair,
    method: str,
    spec: SpeculativeConfig,
    config: ParallelConfig,
    keeper: BranchKeeper | None = None,
    probe: bool = True,
) -> ParallelDecoder:
    """PEARL or SpecBranch: the draft link, the cost probe, the branch policy, an H-RAD keeper.

    Branch length: config.max_draft_len, else the measured c (probe), else 1.
    """
    target = pair_backends(pair)[0]
    link = _link(pair, config, target)
    try:
        verify = forward_seconds(KVSequence(target), VERIFY_TOKENS) if probe else 0.0
        cost = CostRatio(verify, link.draft_seconds) if probe else None
    except BaseException:
        link.close()
        raise
    length = config.max_draft_len or (cost.draft_length if cost else 1)
    policy: BranchPolicy = (
        PearlPolicy(length) if method == "pearl" else SpecBranchPolicy(config.k_max, config.epsilon, length)
    )
    draft_policy = (spec.draft_policy, spec.gamma, length)
    ratio = cost.ratio if cost else 0.0
    return ParallelDecoder(target, link, policy, spec.draft_sampling, draft_policy, ratio, keeper)
