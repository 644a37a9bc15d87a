"""Tiny random-weight models for fast, exact tests.

Models are built in float64 so that a forward over many tokens and a forward over one token
agree to ~1e-15: greedy equality then tests the algorithms, not floating-point luck.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from specbranch.config import GenerationConfig
from specbranch.hrad.features import feature_dim
from specbranch.hrad.predictor import HRadMLP, Predictor, PredictorMeta, pair_identity
from specbranch.models import ModelPair
from specbranch.sampling import process_logits


def tiny_model(
    vocab: int = 64,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 32,
    init: float = 0.3,
    max_positions: int = 256,
    eos: int | None = None,
) -> LlamaForCausalLM:
    """A random Llama with peaked next-token distributions (large init range)."""
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        initializer_range=init,
        tie_word_embeddings=False,
        eos_token_id=eos,
        bos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float64).eval()
    model.generation_config.eos_token_id = eos
    return model


def perturbed(model: LlamaForCausalLM, scale: float, seed: int) -> LlamaForCausalLM:
    """A copy of model with Gaussian noise of std `scale` added to every weight."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * scale)
    return other


def make_pair(target: LlamaForCausalLM, draft: LlamaForCausalLM | None) -> ModelPair:
    return ModelPair.from_models(target, draft)


@torch.inference_mode()
def exact_sequence_distribution(model: LlamaForCausalLM, prompt: list[int], length: int, process) -> dict:
    """Exact probability of every continuation of `length` tokens under the processed target."""
    out = {(): 1.0}
    for _ in range(length):
        nxt = {}
        for prefix, prob in out.items():
            ids = torch.tensor([prompt + list(prefix)])
            probs = process(model(ids).logits[0, -1])
            for token, p in enumerate(probs.tolist()):
                if p > 0:
                    nxt[prefix + (token,)] = prob * p
        out = nxt
    return out


def sampled_counts(engine, prompt: list[int], length: int, sampling, n: int) -> Counter:
    """How often each continuation of `length` tokens came out of `engine` over seeds 0..n-1."""
    counts = Counter()
    for seed in range(n):
        config = GenerationConfig(max_new_tokens=length, sampling=sampling, seed=seed)
        counts[tuple(engine.generate(prompt, config).token_ids)] += 1
    return counts


def processed_distribution(model: LlamaForCausalLM, prompt: list[int], length: int, sampling) -> dict:
    """`exact_sequence_distribution` under `sampling`'s logits processing."""
    return exact_sequence_distribution(model, prompt, length, lambda logits: process_logits(logits, sampling))


CHARS = "abcdefghijklmnopqrstuvwxyz .,\n"


def char_tokenizer(chars: str = CHARS):
    """A character-level fast tokenizer: id 0 is <eos>, then one id per character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def save_tiny_model_dir(path, seed: int, chars: str = CHARS, max_positions: int = 256, **kwargs) -> str:
    """Save a tiny float32 model with a character tokenizer to `path` (a loadable model folder)."""
    tokenizer = char_tokenizer(chars)
    model = tiny_model(vocab=len(tokenizer), seed=seed, max_positions=max_positions, eos=0, **kwargs)
    model.to(torch.float32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def forced_predictor(pair, layers: int, label: int) -> Predictor:
    """A predictor that always answers `label` (its last layer is a constant)."""
    dim = feature_dim(pair.target.config.hidden_size, layers)
    mlp = HRadMLP(dim, (4, 4), 0.0)
    with torch.no_grad():
        mlp.net[-1].weight.zero_()
        mlp.net[-1].bias.zero_()
        mlp.net[-1].bias[label] = 1.0
    return Predictor(mlp, PredictorMeta(pair.name, pair_identity(pair), layers, dim, (4, 4), 0.0))
