"""Decoding methods, one module each, and the factory that builds them for a model pair."""

from __future__ import annotations

import os
from dataclasses import fields

import torch

from specbranch.config import ParallelConfig, SpeculativeConfig
from specbranch.decoders.ar import AutoregressiveDecoder
from specbranch.decoders.base import Decoder
from specbranch.decoders.drafter import BranchDrafter
from specbranch.decoders.parallel import BranchKeeper, InlineLink, ParallelDecoder
from specbranch.decoders.pearl import PearlPolicy
from specbranch.decoders.sd import SpeculativeDecoder
from specbranch.decoders.specbranch import SpecBranchPolicy
from specbranch.errors import SpecBranchError
from specbranch.hrad import resolve_keeper
from specbranch.models import ModelPair
from specbranch.policies import build_policy, parse_policy
from specbranch.probe import VERIFY_TOKENS, CostRatio, forward_seconds
from specbranch.runner import CachedModel

METHODS = ("ar", "sd", "pearl", "specbranch")
PARALLEL_OPTIONS = tuple(f.name for f in fields(ParallelConfig))


def build_decoder(pair: ModelPair, method: str, spec: SpeculativeConfig, **options: object) -> Decoder:
    """The decoder for `method` on `pair`; options are `ParallelConfig` fields (pearl, specbranch)."""
    if method not in METHODS:
        raise SpecBranchError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("ar", "sd") and options:
        raise SpecBranchError(f"method {method!r} takes no options {sorted(options)}")
    if method == "ar":
        return AutoregressiveDecoder(CachedModel(pair.target, pair.vocab_size))
    if pair.draft is None:
        raise SpecBranchError(f"method {method!r} needs a draft model")
    if method == "sd":
        target = CachedModel(pair.target, pair.vocab_size)
        draft = CachedModel(pair.draft, pair.vocab_size)
        policy_spec = spec.draft_policy or "fixed"
        cap = spec.gamma
        if parse_policy(policy_spec)[0] not in ("fixed", "heuristic"):  # these need no cost ratio
            cap = CostRatio(forward_seconds(target, VERIFY_TOKENS), forward_seconds(draft, 1)).draft_length
        policy = build_policy(policy_spec, spec.gamma, cap)
        return SpeculativeDecoder(target, draft, spec, pair.max_length, pair.eos_ids, policy)
    unknown = sorted(set(options) - set(PARALLEL_OPTIONS))
    specbranch_only = sorted({"k_max", "epsilon", "hrad"} & set(options))
    if unknown or (method == "pearl" and specbranch_only):
        raise SpecBranchError(f"method {method!r} takes no options {unknown or specbranch_only}")
    return build_parallel(pair, method, spec, ParallelConfig(**options))


def build_parallel(
    pair: ModelPair,
    method: str,
    spec: SpeculativeConfig,
    config: ParallelConfig,
    keeper: BranchKeeper | None = None,
) -> ParallelDecoder:
    """PEARL or SpecBranch: a draft worker process (or inline drafter), the probe, the policy.

    keeper: SpecBranch's H-RAD keeper; None = the one `config.hrad` names.
    """
    if keeper is None and method == "specbranch":
        keeper = resolve_keeper(config.hrad, pair)
    cores = os.cpu_count() or 2
    draft_threads = config.draft_threads or max(1, cores // 2)
    target = CachedModel(pair.target, pair.vocab_size)
    if config.inline:
        if config.target_threads:
            torch.set_num_threads(config.target_threads)
        draft_model = pair.draft if config.draft_device is None else pair.draft.to(config.draft_device)
        runner = CachedModel(draft_model, pair.vocab_size)
        link = InlineLink(BranchDrafter(runner, pair.eos_ids))
        draft_seconds = forward_seconds(runner, new_tokens=1)
    else:
        from specbranch.workers import WorkerLink, WorkerOptions

        options = WorkerOptions(
            threads=draft_threads,
            device=config.draft_device,
            master_addr=config.master_addr,
            master_port=config.master_port,
            timeout=config.worker_timeout,
        )
        torch.set_num_threads(config.target_threads or max(1, cores - draft_threads))
        link = WorkerLink(pair.draft, pair.vocab_size, pair.eos_ids, options, target.device)
        draft_seconds = link.draft_seconds
    try:
        cost = CostRatio(forward_seconds(target, VERIFY_TOKENS), draft_seconds)
    except BaseException:
        link.close()
        raise
    length = config.max_draft_len or cost.draft_length
    if method == "pearl":
        policy = PearlPolicy(length)
    else:
        policy = SpecBranchPolicy(config.k_max, config.epsilon, length)
    draft_policy = (spec.draft_policy, spec.gamma, length)
    return ParallelDecoder(target, link, policy, spec.draft_sampling, draft_policy, cost, keeper)


__all__ = ["METHODS", "PARALLEL_OPTIONS", "Decoder", "build_decoder"]
