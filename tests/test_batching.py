"""Batched rounds (`engine.run_rounds`) and continuous batching in the server.

- Float64 tiny models on the torch backend (one forward runs every request's feed: flat tokens,
  attention per sequence on its own cache): one batched forward gives each feed the logits,
  captured hidden states and cache it gets alone (within 1e-12); a request's tokens in a batch
  equal its tokens alone, token for token, greedy and sampled (same seed; with each method's
  exact-distribution tests this carries their proof over to batched requests), while its batch
  mates use other methods, lengths, temperatures, top-k and top-p; the target forwards and the
  draft forwards really ran batched (counted: mates' sequences booked the same forward); each
  further draft level is judged with the mates that rode in the level before (alone: priced
  whole). A
  sampled tree is the exception: its shape follows its mates' share of the round, so only its
  distribution is the same (next).
- A mate that leaves mid-way (cancelled: dropped between rounds) or whose round fails (its
  proposer raises) leaves the others' tokens unchanged, and the failure is that mate's alone.
- On both backends (tiny pairs: float64 torch, GGUF on llama.cpp, where one `llama_decode` runs
  every request's tokens and the logits depend on the batch's shape): a sampled SpecBranch
  request decoded beside a greedy mate fits the target's distribution (chi-square at alpha
  1e-3, power >= 0.9 against a total variation of 0.08 on its first two tokens:
  `stats.detectable_tv`), and every one of its rounds ran in a forward of more tokens than its
  own.
- A request is admitted only while llama.cpp's context cells hold it beside the running ones.
- The server: concurrent streaming clients are decoded together (mean batch size > 1) and each
  gets the library's answer; `--max-batch 1` decodes them one at a time.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch
from gguf_models import write_tiny_gguf
from helpers import make_pair, perturbed, tiny_model
from stats import chi_square_pvalue, detectable_tv
from test_server import NAME, client, get, library_ar, running_server
from test_tree_decoder import WIDE

from specbranch.backends.base import Feed, KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.costs import Share
from specbranch.decoders import tree as tree_module
from specbranch.decoders.proposer import Proposer
from specbranch.engine import Engine, Generation, run_rounds
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair
from specbranch.models.gguf import GGUFModel
from specbranch.runtime import assembly
from specbranch.server.app import ServerConfig

TARGET = tiny_model(seed=5)  # float64, vocabulary 64
PAIR = make_pair(TARGET, perturbed(TARGET, 0.05, seed=6))
SERIAL_TREE = {"execution": "serial", "tree_nodes": 8, "max_draft_len": 3, "k_max": 4}
# (method, options, prompt, max_new_tokens, sampling, seed): mates that differ in everything
MATES = [
    ("specbranch", SERIAL_TREE | {"lookup": "on"}, [3, 1, 4, 3, 1], 14, SamplingParams(0.8, top_p=0.9), 5),
    ("sd", {}, [7, 7, 2, 9], 9, SamplingParams(0.0), 0),
    ("ar", {}, [11, 12, 13], 5, SamplingParams(1.3, top_k=5), 9),
    ("lookup", {}, [2, 3, 2, 3, 2], 11, SamplingParams(0.0), 0),
    ("specbranch", SERIAL_TREE, [8, 6, 4], 12, SamplingParams(0.0), 0),
    ("sd", {"lookup": "on"}, [1, 2, 1, 2, 1], 8, SamplingParams(1.0), 3),
]


@pytest.fixture(autouse=True)
def synthetic_costs(monkeypatch):
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)


def engines(pair: ModelPair) -> dict[str, Engine]:
    made: dict[str, Engine] = {}
    for method, options, *_ in MATES:
        key = f"{method}{sorted(options.items())}"
        made.setdefault(key, Engine(pair, method, SpeculativeConfig(gamma=3), **options))
    return made


def begin(engine_by_key: dict[str, Engine], mate: tuple) -> Generation:
    method, options, prompt, n, sampling, seed = mate
    engine = engine_by_key[f"{method}{sorted(options.items())}"]
    return engine.begin(prompt, GenerationConfig(n, sampling, seed, ignore_eos=True))


def decode_together(generations: list[Generation], leave: dict | None = None) -> tuple[list, Counter]:
    """Rounds of every live generation together until each has finished, failed or left (leave:
    generation index -> the round before which it is dropped); (tokens or the exception that
    ended each, counts of rounds: "batched" with more than one generation, "target" / "draft"
    where two generations' sequences booked one forward, "drafting mates" after which some
    request knew mates had drafted beside it)."""
    out: list = [None] * len(generations)
    live, counts, round_no = list(range(len(generations))), Counter(), 0
    while live:
        live = [i for i in live if (leave or {}).get(i) != round_no]
        if not live:
            break
        counts["batched"] += len(live) > 1
        before = [sequence_forwards(generations[i]) for i in live]
        for i, made in zip(live, run_rounds([generations[i] for i in live]), strict=True):
            if isinstance(made, Exception) or made.result is not None:
                out[i] = made if isinstance(made, Exception) else made.result.token_ids
        for side in ("target", "draft"):
            counts[side] += shared_a_forward([generations[i] for i in live], before, side)
        counts["drafting mates"] += any(generations[i].request.drafting_mates for i in live)
        live = [i for i in live if out[i] is None]
        round_no += 1
    return out, counts


def sequence_forwards(generation: Generation) -> dict[str, int]:
    request = generation.request
    return {"target": request.target.forwards, "draft": request.draft.forwards if request.draft else 0}


def shared_a_forward(generations: list[Generation], before: list[dict], side: str) -> bool:
    """Whether two of the generations ran a forward on `side` this round whose booking (tokens
    of the whole forward, its seconds) is the same: one forward ran both their feeds."""
    bookings = [
        getattr(g.request, side).last_feed
        for g, was in zip(generations, before, strict=True)
        if sequence_forwards(g)[side] > was[side]
    ]
    return len(set(bookings)) < len(bookings)


def alone(engine_by_key: dict[str, Engine], mate: tuple) -> list[int]:
    method, options, prompt, n, sampling, seed = mate
    engine = engine_by_key[f"{method}{sorted(options.items())}"]
    return engine.generate(prompt, GenerationConfig(n, sampling, seed, ignore_eos=True)).token_ids


def shaped_by_mates(mate: tuple) -> bool:
    """A sampled tree: its shape depends on its batch mates' share of the round (the goodput
    controller), so its tokens for a seed differ from alone's; its distribution does not (the
    llama.cpp test below)."""
    return mate[0] == "specbranch" and not mate[4].greedy


def test_a_batched_torch_forward_gives_each_feed_what_it_gets_alone():
    """Feeds of three sequences in one forward (a prompt, a chain, a tree below existing nodes,
    a single node beside cached nodes it must not see): each feed's logits, hidden-state capture
    and cache equal those of forwards of it alone."""
    backend = TorchBackend(TARGET, 64)
    rounds = [
        [([1, 2, 3, 4, 5], [], [], 2), ([7, 8], [], [], 1), ([9], [], [], 1)],
        [([6], [10, 11, 12], [-1, 0, -1], 4), ([3], [], [], 1), ([], [4, 5], [-1, 0], 2)],
        [([], [13], [1], 1), ([2], [], [], 1), ([], [6], [0], 1)],  # nodes 2 / 1 are not theirs
    ]
    alone, together = [KVSequence(backend) for _ in range(3)], [KVSequence(backend) for _ in range(3)]
    alone[1].capture_layers = together[1].capture_layers = 2
    for feeds in rounds:
        solo = [backend.forward([Feed(seq, *feed)])[0] for seq, feed in zip(alone, feeds, strict=True)]
        batched = backend.forward([Feed(seq, *feed) for seq, feed in zip(together, feeds, strict=True)])
        for x, y in zip(solo, batched, strict=True):
            assert x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=1e-12)
        assert torch.allclose(alone[1].last_hidden, together[1].last_hidden, rtol=0, atol=1e-12)
        assert together[0].last_feed[0] == sum(len(t) + len(n) for t, n, _, _ in feeds)  # one forward
    for a, b in zip(alone, together, strict=True):
        assert a.tokens == b.tokens and a.parents == b.parents
        for la, lb in zip(a.state.layers, b.state.layers, strict=True):
            assert torch.allclose(la.keys, lb.keys, rtol=0, atol=1e-12)
            assert torch.allclose(la.values, lb.values, rtol=0, atol=1e-12)


def test_each_request_in_a_batch_gets_the_tokens_it_gets_alone():
    made = engines(PAIR)
    expected = [alone(made, mate) for mate in MATES]
    generations = [begin(made, mate) for mate in MATES]
    got, counts = decode_together(generations)
    for mate, tokens, wanted in zip(MATES, got, expected, strict=True):
        assert len(tokens) == mate[3]
        assert shaped_by_mates(mate) or tokens == wanted, mate
    assert counts["batched"] >= 5
    assert counts["target"] == counts["batched"]  # every such round shared its target forward
    assert counts["draft"] >= 3  # and drafting mates shared their draft forwards
    assert counts["drafting mates"] >= 3  # which the controller then prices as shared (`Share`)


def test_a_draft_level_is_priced_with_the_mates_that_rode_in_the_one_before(monkeypatch):
    """Whether a plan drafts one more level is judged with its request's `drafting_mates` set to
    the other requests whose feeds ran in the level's forward it just got (their draft sequences
    booked that forward), and its draft curve as that share (`costs.Share`; alone, the whole
    forward): a level drafted after the mates stopped is priced alone. Asserted at every such
    judgement; the path ran with mates and alone."""
    deep_tree = SERIAL_TREE | {"max_draft_len": 6, "tree_nodes": 24}
    deep = Engine(PAIR, "specbranch", SpeculativeConfig(gamma=3), **deep_tree)
    shallow = Engine(PAIR, "specbranch", SpeculativeConfig(gamma=3), **SERIAL_TREE)
    config = GenerationConfig(3, SamplingParams(0.0), 0, ignore_eos=True)  # 3 tokens: 2 levels at most
    generations = [deep.begin([8, 6, 4], replace(config, max_new_tokens=16))]
    generations += [shallow.begin(prompt, config) for prompt in ([3, 1, 4, 3], [5, 9, 5, 9, 5], [7, 7, 2])]
    judged, riders_seen = tree_module.worth_a_level, Counter()

    def watched(rnd, frontier, levels):
        request = rnd.request
        riders = sum(g.request.draft.last_feed == request.draft.last_feed for g in generations)
        assert request.drafting_mates == riders - 1
        draft = rnd.limits.draft
        assert (draft.sharers == riders) if isinstance(draft, Share) else riders == 1
        riders_seen["alone" if riders == 1 else "shared"] += 1
        return judged(rnd, frontier, levels)

    monkeypatch.setattr(tree_module, "worth_a_level", watched)
    got, _ = decode_together(generations)
    assert all(isinstance(tokens, list) for tokens in got), got  # no assertion above ended a plan
    assert riders_seen["shared"] >= 3 and riders_seen["alone"] >= 1, riders_seen


def test_a_mate_that_leaves_or_fails_leaves_the_others_unchanged():
    made = engines(PAIR)
    expected = [alone(made, mate) for mate in MATES]

    class Breaks(Proposer):
        """A proposer that fails on its third call (a failure inside one request's plan)."""

        calls = 0

        def continuations(self, context: list[int], num_tokens: int, count: int) -> list[list[int]]:
            Breaks.calls += 1
            if Breaks.calls == 3:
                raise RuntimeError("the proposer broke")
            return []

    broken = Engine(PAIR, "sd", SpeculativeConfig(gamma=3), lookup="on")
    broken.decoder.proposer = Breaks()
    generations = [begin(made, mate) for mate in MATES]
    generations.append(broken.begin([4, 4, 4], GenerationConfig(10, SamplingParams(0.0), ignore_eos=True)))
    got, _ = decode_together(generations, leave={0: 2, 3: 1})
    assert got[0] is None and got[3] is None  # left before finishing (cancelled)
    assert isinstance(got[-1], RuntimeError) and Breaks.calls >= 3
    for i, (mate, tokens) in enumerate(zip(MATES, got, strict=False)):
        if i not in (0, 3) and not shaped_by_mates(mate):
            assert tokens == expected[i], mate


@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory) -> ModelPair:
    folder = tmp_path_factory.mktemp("batch-gguf")
    target = GGUFModel(write_tiny_gguf(folder / "target.gguf", vocab=8, seed=2, init=0.4))
    draft = GGUFModel(write_tiny_gguf(folder / "draft.gguf", vocab=8, seed=2, init=0.36, kind="Q8_0"))
    return ModelPair.from_models(target, draft)


@pytest.fixture(scope="module")
def torch_pair() -> ModelPair:
    target = tiny_model(vocab=8, seed=2, init=0.4)
    return make_pair(target, perturbed(target, 0.05, seed=3))


N = 2000


@pytest.mark.parametrize("backend", ["torch_pair", "gguf_pair"])
def test_a_sampled_request_batched_keeps_the_targets_distribution(backend, request):
    from test_llamacpp_backend import target_distribution

    pair = request.getfixturevalue(backend)
    sampling, prompt = SamplingParams(0.9, top_k=6), [1, 2, 3, 1, 2]
    tree = Engine(pair, "specbranch", SpeculativeConfig(), **SERIAL_TREE, lookup="on")
    mate = Engine(pair, "ar")
    outputs, shared, rounds = Counter(), 0, 0
    for seed in range(N):
        config = GenerationConfig(2, sampling, seed, ignore_eos=True)
        generation = tree.begin(prompt, config)
        other = mate.begin([5, 6, 7, 5], GenerationConfig(8, SamplingParams(0.0), ignore_eos=True))
        while not generation.done:
            made = run_rounds([generation, other] if not other.done else [generation])
            assert not any(isinstance(m, Exception) for m in made)
            rounds += 1  # one forward ran both: both sequences booked its tokens and seconds
            shared += generation.request.target.last_feed == other.request.target.last_feed
        outputs[tuple(generation.new)] += 1
    expected = target_distribution(pair, prompt, 2, sampling)
    cells = sum(p * N >= 5 for p in expected.values()) + 1
    assert detectable_tv(N, cells) <= 0.08
    assert chi_square_pvalue(outputs, expected, N) > 1e-3
    assert shared == rounds


def test_the_server_decodes_concurrent_clients_together():
    prompts = ["go", "abc", "the end", "xyz z"]
    expected = [library_ar(p, 40) for p in prompts]
    with running_server("sd", max_batch=4) as (url, _):

        def ask(prompt: str) -> str:
            stream = client(url).completions.create(
                model=NAME, prompt=prompt, max_tokens=40, temperature=0, stream=True
            )
            return "".join(chunk.choices[0].text for chunk in stream if chunk.choices)

        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(ask, prompts))
        metrics = get(url, "/v1/metrics")[1]
    assert got == expected
    assert metrics["mean_batch_size"] > 1.0 and metrics["completed"] == 4


def test_max_batch_one_decodes_one_request_at_a_time():
    with running_server("sd", max_batch=1) as (url, _):
        with ThreadPoolExecutor(3) as pool:
            ask = lambda p: client(url).completions.create(model=NAME, prompt=p, max_tokens=20)  # noqa: E731
            list(pool.map(ask, "abc"))
        metrics = get(url, "/v1/metrics")[1]
    assert metrics["mean_batch_size"] == 1.0 and metrics["completed"] == 3
    with pytest.raises(SpecBranchError, match="max-batch"):
        ServerConfig(NAME, "sd", max_batch=0)



def test_a_request_is_admitted_only_while_llamacpps_cells_hold_it(gguf_pair):
    engine = Engine(gguf_pair, "ar")  # a 512-cell context: prompt + budget + ROUND_CELLS each
    prompt = [1, 2, 3]
    long, short = GenerationConfig(200, ignore_eos=True), GenerationConfig(100, ignore_eos=True)
    running = [engine.begin(prompt, long)]
    assert engine.fits([], prompt, long) and not engine.fits(running, prompt, long)  # 2 x 267 > 512
    running = [engine.begin(prompt, short) for _ in range(2)]
    assert engine.fits(running, prompt, short) and not engine.fits([*running, running[0]], prompt, short)
    torch_engine = Engine(PAIR, "ar")  # the torch backend's caches grow as they need
    assert torch_engine.fits([torch_engine.begin(prompt, long)] * 50, prompt, long)
