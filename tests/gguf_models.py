"""Tiny random GGUF models written by the test itself (the `gguf` package), for the llama.cpp
backend: a Llama architecture with no tokenizer (token ids in, logits out), F32 or with its
matrices quantized (Q8_0). Large init ranges give peaked next-token distributions, like
`helpers.tiny_model`."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

QUANTIZED = {"F32": None, "Q8_0": gguf.GGMLQuantizationType.Q8_0}


def write_tiny_gguf(
    path: Path, vocab: int = 64, seed: int = 0, layers: int = 2, hidden: int = 32, ffn: int = 64,
    heads: int = 4, kv_heads: int = 2, init: float = 0.3, kind: str = "F32", context: int = 512,
) -> Path:
    """Write a random Llama GGUF to `path` (kind: "F32" or "Q8_0"); the path."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("none")
    rng = np.random.default_rng(seed)
    kv = kv_heads * (hidden // heads)

    def matrix(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * init).astype(np.float32)
        quantized = QUANTIZED[kind]
        if quantized is None:
            writer.add_tensor(name, data)
        else:
            packed = gguf.quants.quantize(data, quantized)
            writer.add_tensor(name, packed, raw_dtype=quantized)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))

    matrix("token_embd.weight", vocab, hidden)
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", hidden, hidden)
        matrix(f"blk.{i}.attn_k.weight", kv, hidden)
        matrix(f"blk.{i}.attn_v.weight", kv, hidden)
        matrix(f"blk.{i}.attn_output.weight", hidden, hidden)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_up.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_down.weight", hidden, ffn)
    norm("output_norm.weight")
    matrix("output.weight", vocab, hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
