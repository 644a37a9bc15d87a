"""A causal LM together with its KV cache, kept on a prefix of a token sequence.

The runner remembers which token ids its cache holds. `logits_for(seq, n)` makes the cache
hold all of `seq` and returns the logits of its last `n` positions: it rolls the cache back to
the longest common prefix of what it holds and `seq` (never recomputing that prefix), then
feeds only the rest. Rolling back after a rejection is therefore implicit: call it with the
committed sequence and the rejected tail is cropped away.
"""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache, PreTrainedModel


class CachedModel:
    """A model plus its KV cache.

    vocab_size: logits are cut to this width (drops padding rows beyond the tokenizer's vocab).
    busy_seconds: wall time spent in forwards, for the busy-time metrics.
    """

    def __init__(self, model: PreTrainedModel, vocab_size: int) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.device = next(model.parameters()).device
        self.reset()

    def reset(self) -> None:
        """Forget the cache and zero the counters (start of a new request)."""
        self.tokens = []
        self.cache = DynamicCache(config=self.model.config)
        self.busy_seconds = 0.0
        self.forwards = 0

    def crop(self, length: int) -> None:
        """Roll the cache back to its first `length` tokens."""
        extra = len(self.tokens) - length
        if extra > 0:
            self.cache.crop(-extra)
            del self.tokens[length:]

    def common_prefix(self, seq: list[int], limit: int) -> int:
        """Length of the longest common prefix of the cached tokens and seq, at most limit."""
        n = min(len(self.tokens), limit)
        if self.tokens[:n] == seq[:n]:
            return n
        i = 0
        while self.tokens[i] == seq[i]:
            i += 1
        return i

    @torch.inference_mode()
    def logits_for(self, seq: list[int], n: int = 1) -> torch.Tensor:
        """Logits after each of the last n positions of seq: [n, vocab_size].

        The cache ends up holding all of seq.
        """
        self.crop(self.common_prefix(seq, len(seq) - n))
        new = seq[len(self.tokens) :]  # at least n tokens
        start = time.perf_counter()
        ids = torch.tensor([new], dtype=torch.long, device=self.device)  # [1, m]
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=n)
        logits = out.logits[0, -n:, : self.vocab_size]  # [n, V]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.busy_seconds += time.perf_counter() - start
        self.forwards += 1
        self.tokens.extend(new)
        return logits
