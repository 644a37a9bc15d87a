"""A causal LM together with its KV cache, kept on a prefix of a token sequence.

The runner remembers which token ids its cache holds (`tokens`, the *linear* part).
`logits_for(seq, n)` makes the cache
hold all of `seq` and returns the logits of its last `n` positions: it rolls the cache back to
the longest common prefix of what it holds and `seq` (never recomputing that prefix), then
feeds only the rest. Rolling back after a rejection is therefore implicit: call it with the
committed sequence and the rejected tail is cropped away.

Branches (SpecBranch drafting) live in the same cache after the linear part, as a token tree:
`tree_step` feeds one token per branch in one forward with a tree attention mask, so branches
share the prefix KV instead of copying it. `keep_branch` moves the surviving branch's entries
right after the prefix and drops the rest; only new positions are ever copied.

Feature capture (H-RAD, `specbranch.hrad`): with `capture_layers = K > 0`, every forward keeps
`last_hidden`, the hidden states of the model's last K layers at the last position it fed,
concatenated ([K * hidden]); nothing else is retained. With K = 0 (the default) the forward
does not ask the model for hidden states at all.
"""

from __future__ import annotations

import inspect
import time

import torch
from transformers import DynamicCache, PreTrainedModel

from specbranch.tree import TokenTree


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward's name for the KV cache: `cache` (transformers >= 5.24) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class CachedModel:
    """A model plus its KV cache.

    vocab_size: logits are cut to this width (drops padding rows beyond the tokenizer's vocab).
    busy_seconds: wall time spent in forwards, for the busy-time metrics.
    capture_layers / last_hidden: see the module docstring.
    """

    def __init__(self, model: PreTrainedModel, vocab_size: int) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.device = next(model.parameters()).device
        self.cache_keyword = cache_keyword(model)
        self.capture_layers = 0
        self.last_hidden: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the cache and zero the counters (start of a new request)."""
        self.tokens = []
        self.cache = DynamicCache(config=self.model.config)
        self.busy_seconds = 0.0
        self.forwards = 0

    def cache_length(self) -> int:
        """Entries in the cache: the linear tokens plus any branch (tree) tokens after them."""
        return self.cache.get_seq_length()

    def crop(self, length: int) -> None:
        """Roll the cache back to its first `length` linear tokens (dropping any tree tokens)."""
        extra = self.cache_length() - length
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

    def _forward(self, tokens: list[int], **kwargs: object) -> torch.Tensor:
        """One timed, counted forward of `tokens` on the cache; logits [m, vocab_size]."""
        start = time.perf_counter()
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)  # [1, m]
        capture = self.capture_layers
        out = self.model(
            input_ids=ids,
            use_cache=True,
            output_hidden_states=capture > 0,
            **{self.cache_keyword: self.cache},
            **kwargs,
        )
        logits = out.logits[0, :, : self.vocab_size]  # [m, V] (m = kept positions)
        if capture:  # [K * hidden]: the last K layers at the last fed position
            self.last_hidden = torch.cat([h[0, -1] for h in out.hidden_states[-capture:]]).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.busy_seconds += time.perf_counter() - start
        self.forwards += 1
        return logits

    @torch.inference_mode()
    def logits_for(self, seq: list[int], n: int = 1) -> torch.Tensor:
        """Logits after each of the last n positions of seq: [n, vocab_size].

        The cache ends up holding all of seq.
        """
        self.crop(self.common_prefix(seq, len(seq) - n))
        new = seq[len(self.tokens) :]  # at least n tokens
        logits = self._forward(new, logits_to_keep=n)[-n:]  # [n, V]
        self.tokens.extend(new)
        return logits

    @torch.inference_mode()
    def tree_step(
        self, tokens: list[int], ancestors: list[list[int]], depths: list[int], keep: int | None = None
    ) -> torch.Tensor:
        """Feed one token per branch in one forward; logits after each: [m, vocab_size].

        tokens[i] sits `depths[i]` positions past the linear prefix and attends to the prefix,
        to the cache entries listed in ancestors[i] (its branch's earlier tokens), and to itself.
        Returns logits in the order of tokens (only the last `keep` when given: the output
        projection then runs over those rows only); the new entries take the next cache slots.
        """
        prefix, base, m = len(self.tokens), self.cache_length(), len(tokens)
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        allowed = torch.zeros(m, base + m, dtype=torch.bool)
        allowed[:, :prefix] = True
        for i, anc in enumerate(ancestors):
            allowed[i, anc] = True
            allowed[i, base + i] = True
        mask = torch.zeros(1, 1, m, base + m, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)  # [1, 1, m, base + m] additive
        positions = torch.tensor([[prefix + d for d in depths]], device=self.device)  # [1, m]
        return self._forward(
            tokens, attention_mask=mask.to(self.device), position_ids=positions, logits_to_keep=keep or 0
        )

    def logits_for_tree(self, seq: list[int], tree: TokenTree) -> torch.Tensor:
        """Logits after the last token of seq and after each node of a draft tree hanging off
        it, from one forward: [1 + len(tree), vocab_size].

        The cache ends up holding all of seq (linear) and the tree's nodes after it, node j at
        slot len(seq) + j (`keep_branch` then keeps an accepted path). The uncached tail of seq is
        fed as a chain and every node attends to seq and to its own ancestors.
        """
        self.crop(self.common_prefix(seq, len(seq) - 1))
        tail, base = seq[len(self.tokens) :], len(self.tokens)
        chain = list(range(base, base + len(tail)))  # the tail's slots
        paths = [tree.path(j) for j in range(len(tree))]
        ancestors = [chain[:i] for i in range(len(tail))]
        ancestors += [chain + [base + len(tail) + a for a in path[:-1]] for path in paths]
        depths = list(range(len(tail))) + [len(tail) - 1 + len(path) for path in paths]
        logits = self.tree_step(tail + tree.tokens, ancestors, depths, keep=1 + len(tree))  # [1 + N, V]
        self.tokens.extend(tail)
        return logits

    @torch.inference_mode()
    def keep_branch(self, positions: list[int], tokens: list[int]) -> None:
        """Make the tree entries at `positions` (holding `tokens`) the continuation of the prefix.

        Copies only those entries into the slots right after the prefix, then drops every other
        tree entry.
        """
        prefix = len(self.tokens)
        if positions != list(range(prefix, prefix + len(positions))):
            index = torch.tensor(positions, device=self.device)
            for layer in self.cache.layers:
                layer.keys[..., prefix : prefix + len(positions), :] = layer.keys.index_select(-2, index)
                layer.values[..., prefix : prefix + len(positions), :] = layer.values.index_select(-2, index)
        self.tokens.extend(tokens)
        self.crop(len(self.tokens))
