"""End to end on the real built-in Qwen pair (slow: loads 2 GB of weights; CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.models.builtin import installed_models

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parent.parent / "src" / "specbranch" / "data" / "humaneval.jsonl"


@pytest.fixture(scope="module")
def qwen_pair():
    if not all(installed_models()[n] for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")):
        pytest.fail('built-in Qwen pair not installed: pip install -e ".[models]"')
    from specbranch.models import load_pair

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield load_pair(pair="qwen2.5-coder")
    torch.set_num_threads(threads)


def test_sd_equals_ar_on_qwen_32_greedy_tokens(qwen_pair):
    prompt = json.loads(DATA.read_text().splitlines()[0])["prompt"]
    config = GenerationConfig(max_new_tokens=32)
    ar = Engine(qwen_pair, "ar").generate(prompt, config)
    sd = Engine(qwen_pair, "sd", SpeculativeConfig(gamma=6, draft_sampling="greedy")).generate(prompt, config)
    assert len(ar.token_ids) == 32
    assert sd.token_ids == ar.token_ids
    assert sd.metrics.acceptance_rate > 0.5  # the 0.5B drafts code well for the 1.5B
