"""H-RAD: feature capture, the data file, training, the predictor file, and losslessness with it.

The predictor is trained on synthetic separable features (it must learn them), saved and loaded
(identical predictions, metadata kept, other pairs refused), collected and trained end to end
through the CLI on tiny model folders, and plugged into SpecBranch: greedy output equal to AR
and the temperature-1 distribution exact, whichever class it predicts.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import (
    forced_predictor,
    make_pair,
    perturbed,
    processed_distribution,
    sampled_counts,
    save_tiny_model_dir,
    tiny_model,
)
from stats import chi_square_pvalue

from specbranch.backends.base import KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.bench.methods import parse_method
from specbranch.cli import main
from specbranch.config import GenerationConfig, ParallelConfig, SamplingParams, SpeculativeConfig
from specbranch.decoders.drafter import BranchDrafter
from specbranch.engine import Engine
from specbranch.errors import SpecBranchError
from specbranch.hrad.classes import HradClass
from specbranch.hrad.data import DataWriter, read_data
from specbranch.hrad.features import feature_dim
from specbranch.hrad.keeper import (
    LabelRecorder,
    PredictorKeeper,
    keep_confident,
    trusted_classes,
    trusted_for_mode,
)
from specbranch.hrad.predictor import Predictor, PredictorMeta, pair_identity
from specbranch.hrad.train import TrainConfig, confusion_matrix, train_predictor
from specbranch.runtime import build_parallel
from specbranch.runtime.assembly import resolve_keeper
from specbranch.transport.messages import Decision, DraftRequest

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.02, seed=2))
PROMPT = [3, 17, 42, 8, 8, 1]
OPTIONS = ParallelConfig(inline=True, k_max=3, epsilon=0.3, max_draft_len=5, hrad=None)


def header_for(pair, layers: int) -> dict:
    return {"pair": pair.name, "identity": pair_identity(pair), "layers": layers}


def separable(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters, unequally common (50/30/20 %), with a large common offset."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * (n // 2) + [1] * (3 * n // 10) + [2] * (n - n // 2 - 3 * n // 10))
    centers = torch.randn(3, dim, generator=gen) * 3
    features = centers[labels] + torch.randn(n, dim, generator=gen) + 100.0
    return features, labels


def engine_with(
    pair, keeper, spec: SpeculativeConfig | None = None, options: ParallelConfig = OPTIONS
) -> Engine:
    decoder = build_parallel(pair, "specbranch", spec or SpeculativeConfig(), options, keeper=keeper)
    return Engine.from_decoder(pair, "specbranch", decoder)


# --- features ------------------------------------------------------------------------------


@torch.inference_mode()
def test_captured_features_are_the_last_layers_at_the_last_fed_position():
    runner = KVSequence(TorchBackend(TARGET, PAIR.vocab_size))
    runner.capture_layers = 2
    runner.logits_for(PROMPT[:4], 1)
    runner.logits_for(PROMPT, 3)  # an incremental forward over the last 2 tokens
    full = TARGET(torch.tensor([PROMPT]), output_hidden_states=True).hidden_states
    expected = torch.cat([h[0, -1] for h in full[-2:]]).float()
    assert torch.allclose(runner.last_hidden, expected, atol=1e-6)


def test_no_features_are_captured_when_hrad_is_off():
    runner = KVSequence(TorchBackend(TARGET, PAIR.vocab_size))
    runner.logits_for(PROMPT, 1)
    assert runner.last_hidden is None


def test_classes_wrong_more_often_than_right_on_validation_are_not_trusted():
    confusion = [[2, 1, 0], [5, 10, 1], [0, 3, 9]]  # predicted 0: 2 of 7 right; 1: 10/14; 2: 9/10
    assert trusted_classes(confusion) == [False, True, True]
    assert trusted_classes([]) == [True, True, True]
    assert trusted_classes([[0, 0, 0], [0, 3, 0], [0, 0, 1]]) == [True, True, True]  # 0 never predicted


def test_trust_is_judged_on_the_validation_samples_of_the_decoding_mode():
    meta = PredictorMeta("p", {}, 1, 4, (4, 4), 0.0, val_confusion=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert trusted_for_mode(meta, greedy=False) == [True, True, True]  # no per-mode scores: overall
    meta.val_confusion_by_mode = {
        "greedy": [[2, 1, 0], [0, 5, 1], [0, 0, 4]],
        "sampled": [[1, 0, 3], [0, 4, 0], [0, 0, 2]],
    }
    assert trusted_for_mode(meta, greedy=True) == [True, True, True]
    assert trusted_for_mode(meta, greedy=False) == [True, True, False]  # class 2 right 2 of 5
    del meta.val_confusion_by_mode["sampled"]
    assert trusted_for_mode(meta, greedy=False) == [False, True, False]  # nothing proven when sampled


def test_a_predictor_is_off_in_the_decoding_modes_it_was_not_trained_for():
    meta = PredictorMeta("p", {}, 1, 4, (4, 4), 0.0, modes=("greedy",))
    assert trusted_for_mode(meta, greedy=True) == [True, True, True]
    assert trusted_for_mode(meta, greedy=False) == [False, False, False]
    predictor = forced_predictor(PAIR, 1, HradClass.BRANCH_NOW)
    predictor.meta.modes = ("greedy",)
    keeper = PredictorKeeper(predictor)
    assert keeper.start(SamplingParams(temperature=1.0)) == 0
    assert keeper.capture_layers == 0
    # off: the confident prefix as without H-RAD, no decision counted, no features needed
    assert keeper.keep(None, 0, [0.9, 0.9, 0.1], 0.2) == (2, -1)
    with pytest.raises(SpecBranchError, match="modes"):
        TrainConfig(modes=("beam",))


def test_the_draft_drafts_a_whole_branch_only_when_the_keeper_may_keep_it():
    predictor = forced_predictor(PAIR, 1, HradClass.KEEP_ALL)
    predictor.meta.val_confusion_by_mode = {"greedy": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}
    for sampling, whole in ((SamplingParams(temperature=0.0), 1), (SamplingParams(temperature=1.0), 0)):
        with engine_with(PAIR, PredictorKeeper(predictor)) as engine:
            engine.generate(PROMPT, GenerationConfig(max_new_tokens=4, sampling=sampling))
            request = engine.decoder.link.drafter.request
            assert (request.whole_branches, request.epsilon) == (whole, OPTIONS.epsilon)


def test_only_the_first_branches_run_past_the_confidence_cut():
    drafter = BranchDrafter(KVSequence(TorchBackend(PAIR.draft, PAIR.vocab_size)), frozenset())
    for whole in (0, 1, 2):
        # epsilon 0.99: every position is unsure, so a cut branch is its root only
        drafter.start(DraftRequest(PROMPT, SamplingParams(), 0, False, 8, 0.99, whole))
        proposal = drafter.round(Decision(PROMPT, [], -1, max_len=5))
        k = len(proposal.branches)
        assert k > 2 and [len(b) for b in proposal.branches] == [5] * whole + [1] * (k - whole)


def test_keep_confident_counts_leading_confident_tokens():
    assert keep_confident([0.9, 0.5, 0.1, 0.8], 0.3) == 2
    assert keep_confident([0.1, 0.9], 0.3) == 0
    assert keep_confident([0.9, 0.9], 0.3) == 2


# --- data file -----------------------------------------------------------------------------


def test_data_file_survives_interruption_and_resumes(tmp_path):
    header = {"pair": "p", "identity": {"a": 1}, "layers": 2, "sampling": {"temperature": 0.0}}
    path = tmp_path / "data.hrad"
    writer = DataWriter(path, header)
    writer.append("q1", torch.ones(3, 5), [0, 1, 2])
    writer.append("q2", torch.zeros(2, 5), [2, 2])
    writer.close()
    with path.open("ab") as f:  # a record torn by an interruption
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00partial")
    _, features, labels, _ = read_data([path])
    assert features.shape == (5, 5) and labels.tolist() == [0, 1, 2, 2, 2]
    writer = DataWriter(path, header)  # resume: the torn tail is cut, finished prompts known
    assert writer.done == {"q1", "q2"}
    writer.append("q3", torch.ones(1, 5), [1])
    writer.close()
    _, _, labels, sampled = read_data([path])
    assert labels.tolist() == [0, 1, 2, 2, 2, 1] and not sampled.any()  # collected greedily
    with pytest.raises(SpecBranchError, match="other settings"):
        DataWriter(path, {**header, "layers": 3})


def test_a_file_that_is_not_hrad_data_is_refused(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(SpecBranchError, match="not an H-RAD data file"):
        DataWriter(other, {"layers": 1})
    assert other.read_text() == "hello"  # untouched
    with pytest.raises(SpecBranchError, match="not found"):
        read_data([tmp_path / "missing"])


# --- training and the predictor file -------------------------------------------------------


def test_training_on_separable_features_reaches_high_validation_accuracy():
    features, labels = separable(600, 24, seed=0)
    predictor = train_predictor(features, labels, header_for(PAIR, 2), TrainConfig(epochs=30))
    meta = predictor.meta
    assert meta.val_accuracy > 0.95
    assert meta.train_samples + meta.val_samples == 600
    assert sum(map(sum, meta.val_confusion)) == meta.val_samples
    assert [sum(row) for row in meta.val_confusion] == [60, 36, 24]  # stratified 20 % split


def test_training_keeps_the_validation_confusion_of_each_decoding_mode():
    features, labels = separable(300, 24, seed=4)
    sampled = torch.arange(300) % 3 == 0
    meta = train_predictor(features, labels, header_for(PAIR, 2), TrainConfig(epochs=5), sampled=sampled).meta
    by_mode = meta.val_confusion_by_mode
    assert set(by_mode) == {"greedy", "sampled"}
    assert sum(map(sum, by_mode["greedy"])) + sum(map(sum, by_mode["sampled"])) == meta.val_samples
    assert sum(map(sum, by_mode["sampled"])) > 0
    greedy_only = train_predictor(features, labels, header_for(PAIR, 2), TrainConfig(epochs=1)).meta
    assert set(greedy_only.val_confusion_by_mode) == {"greedy"}


def test_confusion_matrix_rows_are_true_classes():
    counts = confusion_matrix(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2]))
    assert counts == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_saved_and_loaded_predictor_gives_identical_predictions(tmp_path):
    features, labels = separable(300, 24, seed=1)
    config = TrainConfig(epochs=5, modes=("greedy",))
    predictor = train_predictor(features, labels, header_for(PAIR, 2), config, ["d.hrad"])
    predictor.save(tmp_path / "p.pt")
    loaded = Predictor.load(tmp_path / "p.pt", PAIR)
    assert torch.equal(loaded.predict_batch(features), predictor.predict_batch(features))
    assert loaded.meta == predictor.meta
    assert loaded.meta.identity == pair_identity(PAIR) and loaded.meta.data == ["d.hrad"]
    assert loaded.meta.modes == ("greedy",)
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    del blob["meta"]["modes"]  # a predictor file from before modes were kept acts in both
    torch.save(blob, tmp_path / "old.pt")
    assert Predictor.load(tmp_path / "old.pt", PAIR).meta.modes == ("greedy", "sampled")


def test_predictor_for_another_pair_is_refused_clearly(tmp_path):
    features, labels = separable(100, 24, seed=2)
    train_predictor(features, labels, header_for(PAIR, 2), TrainConfig(epochs=1)).save(tmp_path / "p.pt")
    other = make_pair(tiny_model(seed=3, hidden=16), None)
    with pytest.raises(SpecBranchError, match="another model pair.*hidden_size"):
        Predictor.load(tmp_path / "p.pt", other)
    with pytest.raises(SpecBranchError, match="another model pair"):
        resolve_keeper(str(tmp_path / "p.pt"), other)


def test_bad_predictor_files_are_clear_errors(tmp_path):
    with pytest.raises(SpecBranchError, match="not found"):
        Predictor.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(SpecBranchError, match="not an H-RAD predictor"):
        Predictor.load(tmp_path / "junk.pt")


def test_auto_and_none_select_no_predictor_for_a_custom_pair():
    assert resolve_keeper("auto", PAIR) is None
    assert resolve_keeper("none", PAIR) is None and resolve_keeper(None, PAIR) is None


def test_bench_compares_specbranch_with_and_without_hrad():
    assert parse_method("specbranch:hrad=none").options == {"hrad": None}
    assert parse_method("specbranch:hrad=my/predictor.pt").options == {"hrad": "my/predictor.pt"}
    with pytest.raises(SpecBranchError, match="hrad"):
        parse_method("sd:hrad=none")


def test_hrad_is_a_specbranch_option_only():
    with pytest.raises(SpecBranchError, match="hrad"):
        Engine(PAIR, "pearl", hrad="none")


# --- losslessness with a predictor ---------------------------------------------------------


def recorded_samples(pair, prompts: list[list[int]], layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    recorder = LabelRecorder(layers)
    features, labels = [], []
    with engine_with(pair, recorder, SpeculativeConfig(draft_sampling="greedy")) as engine:
        for prompt in prompts:
            engine.generate(prompt, GenerationConfig(max_new_tokens=40))
            got, got_labels = recorder.take()
            features += list(got)
            labels += got_labels
    return torch.stack(features), torch.tensor(labels)


def test_recorder_labels_every_kept_branch_by_the_next_round():
    features, labels = recorded_samples(PAIR, [PROMPT, PROMPT[:3]], layers=2)
    assert features.shape[1] == feature_dim(32, 2)
    assert len(labels) >= 5 and set(labels.tolist()) <= {0, 1, 2}


KEEPERS = ["class0", "class1", "class2", "trained"]


def keeper_for(name: str, pair, layers: int) -> PredictorKeeper:
    if name == "trained":
        features, labels = recorded_samples(pair, [PROMPT, PROMPT[:3], PROMPT[2:]], layers)
        predictor = train_predictor(features, labels, header_for(pair, layers), TrainConfig(epochs=10))
        return PredictorKeeper(predictor)
    return PredictorKeeper(forced_predictor(pair, layers, int(name[-1])))


@pytest.mark.parametrize("name", KEEPERS)
def test_greedy_output_equals_ar_with_a_predictor(name):
    config = GenerationConfig(max_new_tokens=40)
    with Engine(PAIR, "ar") as engine:
        expected = [engine.generate(PROMPT[:n], config).token_ids for n in (3, 6)]
    keeper = keeper_for(name, PAIR, layers=2)
    with engine_with(PAIR, keeper, SpeculativeConfig(draft_sampling="greedy")) as engine:
        results = [engine.generate(PROMPT[:n], config) for n in (3, 6)]
    assert [r.token_ids for r in results] == expected
    m = results[0].metrics
    decisions = (m.hrad_keep_none, m.hrad_keep_confident, m.hrad_keep_all)
    assert sum(decisions) > 0 and m.hrad_seconds > 0
    if name != "trained":
        assert decisions[int(name[-1])] == sum(decisions)


SMALL_TARGET = tiny_model(vocab=8, seed=0, layers=1, hidden=16, init=0.5)
SMALL_DRAFT = tiny_model(vocab=8, seed=5, layers=1, hidden=16, init=0.5)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_temperature_one_distribution_is_exact_with_a_predictor(label):
    sampling, length, n = SamplingParams(temperature=1.0), 3, 1500
    pair = make_pair(SMALL_TARGET, SMALL_DRAFT)
    keeper = PredictorKeeper(forced_predictor(pair, 1, label))
    options = ParallelConfig(inline=True, k_max=4, epsilon=0.25, max_draft_len=3, hrad=None)
    with engine_with(pair, keeper, options=options) as engine:
        counts = sampled_counts(engine, [1, 2, 3], length, sampling, n)
    expected = processed_distribution(SMALL_TARGET, [1, 2, 3], length, sampling)
    assert chi_square_pvalue(counts, expected, n) > 1e-3


# --- the commands, end to end --------------------------------------------------------------


def test_collect_train_and_use_through_the_cli(tmp_path, capsys):
    target = save_tiny_model_dir(tmp_path / "target", seed=1)
    draft = save_tiny_model_dir(tmp_path / "draft", seed=1)  # same weights: long acceptances
    prompts = tmp_path / "prompts.jsonl"
    texts = ["hello", "abc", "the cat", "zz", "ok"]
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in texts))
    models = ["--target", target, "--draft", draft]
    data, predictor = str(tmp_path / "d.hrad"), str(tmp_path / "p.pt")
    collect = ["hrad", "collect", *models, "--prompts-file", str(prompts), "--max-new-tokens", "40",
               "--max-draft-len", "4", "--inline", "--no-progress", "--layers", "2", "--out", data]
    assert main([*collect, "--num-prompts", "3"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["prompts"] == 3 and first["samples"] > 0
    assert main([*collect, "--num-prompts", "5"]) == 0  # resumes: only the 2 new prompts run
    second = json.loads(capsys.readouterr().out)
    assert second["skipped_already_collected"] == 3 and second["prompts"] == 2
    assert main(["hrad", "train", data, "--out", predictor, "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "accuracy" in out and "decoding greedy: acts on classes" in out
    common = ["generate", "hello", *models, "--max-new-tokens", "30", "--json"]
    assert main([*common, "--method", "ar"]) == 0
    expected = json.loads(capsys.readouterr().out)["token_ids"]
    hrad = ["--method", "specbranch", "--execution", "parallel", "--hrad", predictor, "--max-draft-len", "4"]
    hrad += ["--draft-sampling", "greedy"]
    assert main([*common, *hrad]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["token_ids"] == expected
    m = result["metrics"]
    assert m["hrad_keep_none"] + m["hrad_keep_confident"] + m["hrad_keep_all"] > 0
    assert 0 < result["metrics"]["hrad_overhead"] < 1
