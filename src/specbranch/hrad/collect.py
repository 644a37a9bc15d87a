"""`specbranch hrad collect`: run SpecBranch on prompts and store H-RAD's (z, label) samples.

The decoder runs with a `LabelRecorder` as its keeper: every branch is drafted to full length
(no confidence cut) and kept whole, and each branch hit's features z are labelled with what the
next round's verification did to that branch (0 nothing accepted, 1 part, 2 all). One record
per prompt is appended to the data file (`specbranch.hrad.data`), so an interrupted run keeps
what it wrote and a rerun with the same settings resumes after the last complete prompt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from specbranch.config import GenerationConfig, ParallelConfig, SamplingParams, SpeculativeConfig
from specbranch.datasets import BenchPrompt
from specbranch.engine import Engine, encode_prompt
from specbranch.errors import SpecBranchError
from specbranch.hrad.classes import HradClass
from specbranch.hrad.data import DataWriter
from specbranch.hrad.features import DEFAULT_LAYERS, feature_dim
from specbranch.hrad.keeper import LabelRecorder
from specbranch.hrad.predictor import pair_identity
from specbranch.models import ModelPair
from specbranch.runtime import build_parallel


@dataclass(frozen=True)
class CollectConfig:
    """layers: K; seed: generation i uses seed + i; parallel: SpecBranch's options (hrad ignored)."""

    layers: int = DEFAULT_LAYERS
    max_new_tokens: int = 128
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    chat: bool = False
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise SpecBranchError(f"layers (K) must be >= 1, got {self.layers}")


def collect(
    pair: ModelPair, prompts: list[BenchPrompt], out: str, config: CollectConfig, progress: bool = True
) -> dict:
    """Collect samples for `prompts` into the data file `out`; returns a summary dict."""
    layers = min(config.layers, int(pair.target.config.num_hidden_layers))
    hidden = int(pair.target.config.hidden_size)
    header = {
        "pair": pair.name,
        "identity": pair_identity(pair),
        "layers": layers,
        "feature_dim": feature_dim(hidden, layers),
        "sampling": asdict(config.sampling),
        "max_new_tokens": config.max_new_tokens,
        "seed": config.seed,
        "chat": config.chat,
    }
    writer = DataWriter(out, header)
    recorder = LabelRecorder(layers)
    decoder = build_parallel(pair, "specbranch", SpeculativeConfig(), config.parallel, keeper=recorder)
    engine = Engine.from_decoder(pair, "specbranch", decoder)
    labels: Counter[int] = Counter()
    skipped = 0
    try:
        bar = tqdm(prompts, desc="hrad collect", unit="prompt", disable=not progress)
        for index, prompt in enumerate(bar):
            key = f"{prompt.dataset}:{prompt.question_id}"
            if key in writer.done:
                skipped += 1
                continue
            prompt_ids = encode_prompt(pair, prompt.text, config.chat)
            engine.generate(
                prompt_ids, GenerationConfig(config.max_new_tokens, config.sampling, config.seed + index)
            )
            features, got = recorder.take()
            writer.append(key, features, got)
            labels.update(got)
    finally:
        engine.close()
        writer.close()
    return {
        "out": out,
        "prompts": len(prompts) - skipped,
        "skipped_already_collected": skipped,
        "samples": sum(labels.values()),
        "labels": {c.short: labels[c] for c in HradClass},
    }
