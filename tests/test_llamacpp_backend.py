"""The llama.cpp backend (`backends/llamacpp.py`) on tiny random GGUF models the tests write
(`gguf_models.py`: F32, and Q8_0-quantized matrices).

- A tree's rows equal its paths' rows fed linearly, within LOGITS_BOUND (llama.cpp's logits
  depend on the batch a token rides in, like bf16 here; with flash attention off the measured
  difference is ~3e-6 on these models), whether the tree is fed in one batch with the
  committed tail, grown level by level below existing nodes, or kept and continued.
- Greedy output of every method on the backend equals plain greedy decoding on it (AR) token
  for token, except at a near-tie: a first divergence must sit where the target's top-2 logit
  gap is below NEAR_TIE (a few times the bound); and our AR on llama.cpp gives the tokens of
  llama-cpp-python's own generation loop (the bench peers `llamacpp` and `llamacpp-lookup`).
- The exact distribution of SD and serial SpecBranch (the enumerating oracle over every random
  outcome) equals the processed target's own, computed from the backend's linear logits, within
  DISTRIBUTION_BOUND; the paths asserted to run.
- Requests share one context: their feeds run in one batch (one llama_decode) and give the
  tokens each gets alone; a request's sequence ids return to the pool when it is dropped.
- The server on a llama.cpp pair (a tiny GGUF with a character tokenizer): a streamed chat
  answer through the official `openai` client equals the library's plain decoding, and its
  usage and `speculative` figures name the backend.
"""

from __future__ import annotations

import gc

import pytest
import torch
from gguf_models import write_tiny_gguf
from helpers import char_tokenizer
from oracle import Enumerator, install, max_difference
from test_server import CHAT_TEMPLATE, NAME, client, running_server
from test_tree_decoder import WIDE

from specbranch.backends.base import KVSequence
from specbranch.bench.methods import LlamaCppRunner
from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.decoders.base import plan_alone
from specbranch.engine import Engine
from specbranch.models import ModelPair
from specbranch.models.gguf import GGUFModel
from specbranch.runtime import assembly
from specbranch.runtime.backends import model_backend
from specbranch.sampling import process_logits
from specbranch.token_tree import TokenTree
from specbranch.verify import MIXED, POINT_MASS, SIBLING

LOGITS_BOUND = 1e-4
NEAR_TIE = 1e-3
DISTRIBUTION_BOUND = 1e-5
PROMPT = [3, 17, 42, 8, 8, 1, 60, 22, 9, 3, 17, 42]


@pytest.fixture(scope="module", params=["F32", "Q8_0"])
def pair(request, tmp_path_factory) -> ModelPair:
    folder = tmp_path_factory.mktemp(f"gguf-{request.param}")
    target = GGUFModel(write_tiny_gguf(folder / "target.gguf", seed=1, kind=request.param))
    draft = GGUFModel(write_tiny_gguf(folder / "draft.gguf", seed=1, init=0.28, kind="Q8_0"))
    return ModelPair.from_models(target, draft)


def sequence(pair: ModelPair) -> KVSequence:
    return KVSequence(model_backend(pair.target, pair.vocab_size))


def test_the_pair_runs_on_llamacpp(pair):
    assert pair.backend == "llama.cpp" and model_backend(pair.target, pair.vocab_size).name == "llama.cpp"
    metrics = Engine(pair, "ar").generate(PROMPT, GenerationConfig(max_new_tokens=2)).metrics
    assert metrics.backend == "llama.cpp"


TREE = TokenTree([5, 7, 8, 9, 6], [-1, -1, 1, 1, 0])  # two branches below the root, two below node 1


def test_a_tree_fed_with_the_tail_gives_each_path_its_linear_logits(pair):
    rows = sequence(pair).logits_for_tree(PROMPT, TREE)  # [1 + 5, V]
    for node in range(len(TREE)):
        path = [TREE.tokens[a] for a in TREE.path(node)]
        linear = sequence(pair).logits_for(PROMPT + path, len(path) + 1)
        assert (rows[1 + node] - linear[-1]).abs().max() < LOGITS_BOUND
        assert (rows[0] - linear[0]).abs().max() < LOGITS_BOUND


def test_a_tree_grown_a_level_at_a_time_and_kept_continues_like_the_linear_sequence(pair):
    seq = sequence(pair)
    seq.logits_for(PROMPT, 1)
    seq.grow([5, 7], [-1, -1])
    rows = seq.grow([8, 9, 6], [1, 1, 0])  # below existing nodes
    linear = sequence(pair).logits_for(PROMPT + [7, 9], 1)
    assert (rows[1] - linear[0]).abs().max() < LOGITS_BOUND
    seq.keep([1, 3])  # 7, then 9 below it
    assert seq.tokens == PROMPT + [7, 9] and not seq.parents
    after = seq.logits_for(PROMPT + [7, 9, 11], 1)
    assert (after - sequence(pair).logits_for(PROMPT + [7, 9, 11], 1)).abs().max() < LOGITS_BOUND


def test_crop_rolls_back_to_a_common_prefix(pair):
    seq = sequence(pair)
    seq.logits_for(PROMPT + [5, 6, 7], 1)
    rolled = seq.logits_for(PROMPT + [9], 1)  # crops to PROMPT, feeds 9
    assert seq.tokens == PROMPT + [9]
    assert (rolled - sequence(pair).logits_for(PROMPT + [9], 1)).abs().max() < LOGITS_BOUND


METHODS = {
    "sd": ("sd", {"lookup": "on"}),
    "lookup": ("lookup", {}),
    "tree": ("specbranch", {"execution": "serial", "lookup": "on"}),
    "pearl-inline": ("pearl", {"inline": True}),
}


@pytest.mark.parametrize("method", METHODS)
def test_greedy_output_equals_plain_llamacpp_decoding_except_at_near_ties(method, pair):
    config = GenerationConfig(max_new_tokens=40, ignore_eos=True)
    expected = Engine(pair, "ar").generate(PROMPT, config).token_ids
    name, options = METHODS[method]
    with Engine(pair, name, SpeculativeConfig(), **options) as engine:
        got = engine.generate(PROMPT, config).token_ids
    if got != expected:
        first = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
        top = torch.topk(sequence(pair).logits_for(PROMPT + expected[:first], 1)[0], 2).values
        assert float(top[0] - top[1]) < NEAR_TIE, f"diverged at {first} where the gap is {top[0] - top[1]}"


@pytest.mark.parametrize("lookup", [False, True], ids=["llamacpp", "llamacpp-lookup"])
def test_llama_cpp_pythons_own_greedy_loop_gives_our_plain_decodings_tokens(lookup, pair):
    config = GenerationConfig(max_new_tokens=40, ignore_eos=True)
    peer = LlamaCppRunner(pair, threads=1, lookup=lookup)
    try:
        assert peer.run(PROMPT, config).token_ids == Engine(pair, "ar").generate(PROMPT, config).token_ids
    finally:
        peer.close()


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory) -> ModelPair:
    folder = tmp_path_factory.mktemp("gguf-vocab4")
    target = GGUFModel(write_tiny_gguf(folder / "target.gguf", vocab=4, layers=1, hidden=32, seed=0))
    draft = GGUFModel(write_tiny_gguf(folder / "draft.gguf", vocab=4, layers=1, hidden=32, seed=3, init=0.1))
    return ModelPair.from_models(target, draft)


def target_distribution(pair: ModelPair, prompt: list[int], length: int, sampling: SamplingParams) -> dict:
    """The processed target's exact distribution of `length` tokens, from linear feeds."""
    out = {(): 1.0}
    for _ in range(length):
        nxt = {}
        for prefix, prob in out.items():
            probs = process_logits(sequence(pair).logits_for(prompt + list(prefix), 1)[0], sampling)
            nxt.update({prefix + (t,): prob * float(p) for t, p in enumerate(probs) if p > 0})
        out = nxt
    return out


@pytest.mark.parametrize(
    ("name", "options", "prompt", "path"),
    [
        ("sd", {"lookup": "on"}, [3, 1, 1], POINT_MASS),
        ("specbranch", {"execution": "serial", "lookup": "on", "tree_nodes": 4, "max_draft_len": 2,
                        "k_max": 8}, [1, 2, 1, 2, 1], MIXED),
        ("specbranch", {"execution": "serial", "lookup": "off", "tree_nodes": 4, "max_draft_len": 2,
                        "k_max": 8}, [1, 2, 3], SIBLING),
    ],
    ids=["sd-lookup", "tree-lookup", "tree"],
)
def test_the_exact_distribution_holds_on_the_backend(name, options, prompt, path, small_pair, monkeypatch):
    sampling, length = SamplingParams(temperature=0.7, top_p=0.95), 3 if name == "sd" else 2
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)  # trees that branch
    engine = Engine(small_pair, name, SpeculativeConfig(gamma=3), **options)
    oracle = Enumerator()
    install(monkeypatch, oracle)
    config = GenerationConfig(max_new_tokens=length, sampling=sampling, ignore_eos=True)
    ran = {}

    def run() -> tuple[int, ...]:
        result = engine.generate(prompt, config)
        ran.update({k: ran.get(k, 0) + v for k, v in result.metrics.verify_tests.items()})
        return tuple(result.token_ids)

    got = oracle.distribution(run)
    monkeypatch.undo()
    assert max_difference(got, target_distribution(small_pair, prompt, length, sampling)) < DISTRIBUTION_BOUND
    assert oracle.reused == 0 and oracle.runs > 1 and ran.get(path, 0) > 0


def test_requests_batched_in_one_decode_get_the_tokens_they_get_alone(pair):
    engine = Engine(pair, "specbranch", SpeculativeConfig(), execution="serial", lookup="on")
    decoder, n = engine.decoder, 16
    prompts = [PROMPT, [5, 6, 5, 6, 5, 6, 5]]
    samplings = [(SamplingParams(0.8, top_p=0.95), 7), (SamplingParams(1.3, top_k=20), 11)]
    alone = [
        engine.generate(p, GenerationConfig(n, s, seed, ignore_eos=True)).token_ids
        for p, (s, seed) in zip(prompts, samplings, strict=True)
    ]
    requests = [decoder.start(p, s, seed) for p, (s, seed) in zip(prompts, samplings, strict=True)]
    outputs: list[list[int]] = [[], []]
    while min(len(o) for o in outputs) < n:
        live = [i for i in range(2) if len(outputs[i]) < n]
        proposals = {i: plan_alone(decoder.plan(requests[i], n - len(outputs[i]))) for i in live}
        logits = decoder.target.forward([proposals[i].feed for i in live])  # one llama_decode
        for i, rows in zip(live, logits, strict=True):
            outputs[i] += decoder.settle(requests[i], proposals[i], rows).committed
    assert [o[:n] for o in outputs] == alone


def test_a_dropped_request_returns_its_sequence_ids(pair):
    backend = model_backend(pair.target, pair.vocab_size)
    gc.collect()
    free = len(backend.free_ids)
    seq = KVSequence(backend)
    seq.logits_for_tree(PROMPT, TREE)
    assert len(backend.free_ids) < free
    del seq
    gc.collect()
    assert len(backend.free_ids) == free


def test_the_server_streams_llamacpp_answers(tmp_path):
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab = len(tokenizer)
    target = GGUFModel(write_tiny_gguf(tmp_path / "target.gguf", vocab=vocab, seed=3))
    draft = GGUFModel(write_tiny_gguf(tmp_path / "draft.gguf", vocab=vocab, seed=3, kind="Q8_0"))
    gguf_pair = ModelPair.from_models(target, draft, tokenizer, tokenizer, NAME)
    messages = [{"role": "user", "content": "hello there"}]
    with Engine(gguf_pair, "ar") as engine:
        expected = engine.generate(messages, GenerationConfig(max_new_tokens=24)).text
    options = {"execution": "serial", "lookup": "auto"}
    with running_server("specbranch", gguf_pair, options) as (url, _):
        stream = client(url).chat.completions.create(
            model=NAME, messages=messages, max_tokens=24, temperature=0, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        answer = client(url).chat.completions.create(
            model=NAME, messages=messages, max_tokens=24, temperature=0
        )
    assert text == expected == answer.choices[0].message.content
    assert answer.model_extra["speculative"]["backend"] == "llama.cpp"
