"""Bad input gives one clear error line (exit 2), never a traceback from deep inside torch."""

from __future__ import annotations

import pytest
from helpers import make_pair, save_tiny_model_dir, tiny_model

from specbranch.cli import main
from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import generate
from specbranch.errors import SpecBranchError
from specbranch.models import load_pair


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "target": save_tiny_model_dir(root / "target", seed=1, max_positions=32),
        "draft": save_tiny_model_dir(root / "draft", seed=2, max_positions=32),
        "other_vocab": save_tiny_model_dir(root / "other", seed=3, chars="abcdefghij"),
    }


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_mismatched_vocabularies(models, capsys):
    code, err = run_cli(
        capsys, "generate", "abc", "--target", models["target"], "--draft", models["other_vocab"]
    )
    assert code == 2
    assert "vocabularies differ" in err and "31 tokens" in err and "11 tokens" in err


def test_logits_padding_rows_are_accepted():
    target = tiny_model(vocab=64, seed=1)
    padded_draft = tiny_model(vocab=72, seed=2)  # 8 padding rows
    pair = make_pair(target, padded_draft)
    assert pair.vocab_size == 64
    result = generate(pair, [1, 2, 3], "sd", GenerationConfig(max_new_tokens=8))
    assert all(t < 64 for t in result.token_ids)


def test_empty_prompt(models, capsys):
    code, err = run_cli(capsys, "generate", "", "--target", models["target"], "--draft", models["draft"])
    assert code == 2 and "prompt is empty" in err


def test_prompt_longer_than_context(models, capsys):
    code, err = run_cli(
        capsys, "generate", "a" * 40, "--target", models["target"], "--draft", models["draft"]
    )
    assert code == 2 and "context window is 32 tokens" in err


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--temperature", "-0.5"], "temperature must be >= 0"),
        (["--top-p", "0"], "top_p must be in (0, 1]"),
        (["--top-p", "1.5"], "top_p must be in (0, 1]"),
        (["--top-k", "-1"], "top_k must be"),
        (["--gamma", "0"], "gamma (draft length) must be"),
        (["--max-new-tokens", "0"], "max_new_tokens must be"),
    ],
)
def test_invalid_sampling_parameters(models, capsys, flags, message):
    code, err = run_cli(
        capsys, "generate", "abc", "--target", models["target"], "--draft", models["draft"], *flags
    )
    assert code == 2 and message in err


def test_nonexistent_model_path(capsys, tmp_path):
    code, err = run_cli(
        capsys, "generate", "abc", "--target", str(tmp_path / "nope"), "--draft", str(tmp_path)
    )
    assert code == 2 and "model path does not exist" in err


def test_hub_id_is_not_fetched_silently(capsys):
    code, err = run_cli(capsys, "generate", "abc", "--target", "no-such-org/no-such-model", "--method", "ar")
    assert code == 2 and "--allow-download" in err


def test_library_raises_specbranch_error():
    pair = make_pair(tiny_model(seed=1), None)
    with pytest.raises(SpecBranchError, match="needs a draft model"):
        generate(pair, [1, 2], "sd")
    with pytest.raises(SpecBranchError, match="unknown method"):
        generate(pair, [1, 2], "nope")
    with pytest.raises(SpecBranchError, match="prompt token ids"):
        generate(pair, [1, 999], "ar")
    with pytest.raises(SpecBranchError):
        SamplingParams(temperature=float("nan"))
    with pytest.raises(SpecBranchError):
        SpeculativeConfig(draft_sampling="argmax")


def test_missing_builtin_packages_name_the_install_command(monkeypatch):
    import specbranch.models.builtin as builtin

    monkeypatch.setitem(
        builtin.MODELS,
        "qwen2.5-coder-0.5b",
        builtin.BuiltinModel(
            "qwen2.5-coder-0.5b", "test", "no_such_module_part", 2, "0" * 64, 1, "no-such-pkg"
        ),
    )
    monkeypatch.setenv("SPECBRANCH_CACHE", "/tmp/specbranch-test-empty-cache")
    with pytest.raises(SpecBranchError, match=r'pip install -e "\.\[models\]"'):
        load_pair(pair="qwen2.5-coder")


def test_half_precision_target_gets_float32_logits(tmp_path):
    import torch

    folder = save_tiny_model_dir(tmp_path / "m", seed=0)
    pair = load_pair(folder, folder, dtype="bfloat16", draft_quantize=None)
    assert pair.target.dtype == torch.bfloat16
    logits = pair.target(torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float32 and logits.shape[-1] == pair.vocab_size


@pytest.mark.parametrize("command", [["generate", "hi"], ["chat"], ["serve"]])
def test_draft_policy_with_ar_is_refused_before_any_model_loads(command, capsys, tmp_path):
    argv = [*command, "--method", "ar", "--draft-policy", "tapout", "--target", str(tmp_path / "none")]
    assert main(argv) == 2
    assert "--draft-policy applies to the speculative methods" in capsys.readouterr().err
