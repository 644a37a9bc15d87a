"""The PyTorch/transformers backend: a Hugging Face causal LM with one `DynamicCache` per sequence.

A sequence's tree nodes live in its cache after the linear part, node id a at slot
len(tokens) + a, so branches share the prefix KV instead of copying it. A forward over tree
nodes passes an additive attention mask (each node sees the linear part, its ancestors and
itself) and explicit positions; a forward of committed tokens only is a plain causal forward.
`keep` copies the kept path's entries right after the linear part (only new positions move) and
crops the rest.

A forward of several feeds is *batched*: their tokens run as one flat sequence [1, M] through
every layer (the projections and the MLP, most of the work, once for all), and only attention
is per feed: each feed's queries against its own sequence's cache and its own new keys
(`batched_attention`), under its own mask. No cache is copied: each sequence's `DynamicCache`
grows by its own feed's keys, as in a forward of that feed alone.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from specbranch.backends.base import Capabilities, Feed, KVSequence

BATCHED = "specbranch_batched"  # the attention implementation a batched forward runs under


@dataclass
class _Part:
    """One feed's share of a batched forward: its sequence, its positions in the flat batch
    (`span`) and its additive mask [1, 1, m, cache + m] (None: one committed token on a
    sequence without a tree, which sees the whole cache)."""

    seq: KVSequence
    span: slice
    mask: torch.Tensor | None


def batched_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: object,
    *,
    batch_parts: list[_Part],
    attend: object,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Attention of a batched forward (module docstring). query [1, H, M, D] and key/value
    [1, Hkv, M, D] hold every feed's new positions, feed after feed; each part appends its keys
    to its own sequence's cache and attends there with `attend`, the model's own attention
    function (what a forward of that feed alone runs). attention_mask is unused (each part has
    its own). Returns [1, M, H, D]."""
    outs = []
    for part in batch_parts:
        k, v = part.seq.state.update(key[:, :, part.span], value[:, :, part.span], module.layer_idx)
        out, _ = attend(module, query[:, :, part.span], k, v, part.mask, **kwargs)  # [1, m, H, D]
        outs.append(out)
    return torch.cat(outs, dim=1), None


AttentionInterface.register(BATCHED, batched_attention)


@contextmanager
def _attention(model: PreTrainedModel, implementation: str) -> Iterator[None]:
    """Run the model under another attention implementation for the duration."""
    config = model.config
    original = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = original


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward's name for the KV cache: `cache` (transformers >= 5.24) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class TorchBackend:
    """A transformers model behind the `Backend` interface (module docstring)."""

    name = "torch"
    capabilities = Capabilities(
        batching=True, trees=True, hidden_states=True, processes=True, devices=("cpu", "cuda")
    )

    def __init__(self, model: PreTrainedModel, vocab_size: int) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.device = next(model.parameters()).device
        self.capacity = None  # each sequence's cache grows as it needs
        self.cache_keyword = cache_keyword(model)

    def new_state(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    @torch.inference_mode()
    def forward(self, feeds: list[Feed]) -> list[torch.Tensor]:
        return [self._run(feeds[0])] if len(feeds) == 1 else self._run_batched(feeds)

    def _run(self, feed: Feed) -> torch.Tensor:
        """One timed forward of one feed; its logits [rows, V]."""
        start = time.perf_counter()
        seq = feed.seq
        extra = {}
        if feed.nodes:  # a tree: explicit mask and positions
            extra = self._tree_inputs(feed)
        capture = seq.capture_layers
        ids = torch.tensor([feed.tail + feed.nodes], dtype=torch.long, device=self.device)  # [1, m]
        out = self.model(
            input_ids=ids,
            use_cache=True,
            output_hidden_states=capture > 0,
            logits_to_keep=feed.rows,
            **{self.cache_keyword: seq.state},
            **extra,
        )
        logits = out.logits[0, -feed.rows :, : self.vocab_size]  # [rows, V]
        if capture:  # [K * hidden]: the last K layers at the last fed position
            seq.last_hidden = torch.cat([h[0, -1] for h in out.hidden_states[-capture:]]).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seq.record(feed, time.perf_counter() - start)
        return logits

    def _run_batched(self, feeds: list[Feed]) -> list[torch.Tensor]:
        """One timed forward of several feeds as one flat sequence (module docstring); each
        feed's logits [rows, V]."""
        start = time.perf_counter()
        parts, ids, positions, rows = [], [], [], []
        for feed in feeds:
            extra = self._tree_inputs(feed)
            m = len(feed.tail) + len(feed.nodes)
            mask = extra["attention_mask"] if m > 1 or feed.nodes else None
            parts.append(_Part(feed.seq, slice(len(ids), len(ids) + m), mask))
            ids += feed.tail + feed.nodes
            positions.append(extra["position_ids"])
            rows += range(len(ids) - feed.rows, len(ids))
        capture = max(feed.seq.capture_layers for feed in feeds)
        config = self.model.config
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, sdpa_attention_forward)
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        with _attention(self.model, BATCHED):
            out = self.model(
                input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),  # [1, M]
                position_ids=torch.cat(positions, dim=1),  # [1, M]
                attention_mask=dict.fromkeys(layer_types),  # no model-wide mask: each part has its own
                use_cache=False,
                output_hidden_states=capture > 0,
                logits_to_keep=torch.tensor(rows, device=self.device),
                batch_parts=parts,
                attend=attend,
            )
        logits = out.logits[0, :, : self.vocab_size].split([feed.rows for feed in feeds])  # [rows, V] each
        for feed, part in zip(feeds, parts, strict=True):
            if k := feed.seq.capture_layers:  # [K * hidden] at the feed's last position
                last = [h[0, part.span.stop - 1] for h in out.hidden_states[-k:]]
                feed.seq.last_hidden = torch.cat(last).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        for feed in feeds:
            feed.seq.record(feed, seconds, len(ids))
        return list(logits)

    def _tree_inputs(self, feed: Feed) -> dict[str, torch.Tensor]:
        """The additive attention mask [1, 1, m, cache + m] and positions [1, m] of a feed with
        tree nodes: the tail as a chain after the linear part, then each node after the linear
        part (tail included) and its ancestors (slot len(linear) + id)."""
        seq = feed.seq
        prefix, base, m = len(seq.tokens), seq.cache_length(), len(feed.tail) + len(feed.nodes)
        linear, first = prefix + len(feed.tail), len(seq.parents)  # linear length after; first new id
        chain = list(range(prefix, linear))  # the tail's slots
        parents = seq.parents + feed.parents
        ancestors = [chain[:i] for i in range(len(feed.tail))]
        depths = list(range(len(feed.tail)))
        for i, level in enumerate(feed.levels()):
            above, node = [], parents[first + i]
            while node >= 0:
                above.append(linear + node)
                node = parents[node]
            ancestors.append(chain + above)
            depths.append(len(feed.tail) + level - 1)
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        allowed = torch.zeros(m, base + m, dtype=torch.bool)
        allowed[:, :prefix] = True
        for i, anc in enumerate(ancestors):
            allowed[i, anc] = True
            allowed[i, base + i] = True
        mask = torch.zeros(1, 1, m, base + m, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)  # [1, 1, m, base + m] additive
        positions = torch.tensor([[prefix + d for d in depths]], device=self.device)  # [1, m]
        return {"attention_mask": mask.to(self.device), "position_ids": positions}

    def crop(self, seq: KVSequence, length: int) -> None:
        extra = seq.cache_length() - length
        if extra > 0:
            seq.state.crop(-extra)

    @torch.inference_mode()
    def keep(self, seq: KVSequence, path: list[int]) -> None:
        prefix = len(seq.tokens)
        positions = [prefix + a for a in path]
        if positions != list(range(prefix, prefix + len(path))):
            index = torch.tensor(positions, device=self.device)
            for layer in seq.state.layers:
                layer.keys[..., prefix : prefix + len(path), :] = layer.keys.index_select(-2, index)
                layer.values[..., prefix : prefix + len(path), :] = layer.values.index_select(-2, index)
        self.crop(seq, prefix + len(path))

    def input_embedding(self, token: int) -> torch.Tensor:
        """The model's input embedding of one token: [hidden] float32 (H-RAD's features)."""
        ids = torch.tensor([token], device=self.device)
        return self.model.get_input_embeddings()(ids)[0].float()
