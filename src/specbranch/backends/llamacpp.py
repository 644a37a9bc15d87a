"""The llama.cpp backend: GGUF models through llama-cpp-python's low-level API.

One llama.cpp context per model, its KV cache *unified* (one buffer whose cells carry sequence
ids). A `KVSequence` owns a *main* sequence id (its linear part) and, while it has a tree, one
id per tree leaf. llama.cpp lets a token attend to the cells that carry its first sequence id,
up to its own position, so a tree fed in one batch is laid out as llama.cpp's own speculative
example does:

- every new leaf gets a fresh id, its cells above the feed copied in (`llama_memory_seq_cp`:
  the linear part from the main id, or an existing node's path from the id that holds it);
- a new node carries, first, the id of one leaf below it (it sees its ancestors), then the ids
  of every other leaf below it (all of them see it); committed tokens fed in the same batch
  carry the main id and every leaf's;
- each node remembers the id whose cells up to its position are exactly its path, so later
  feeds can hang nodes below it (the draft grows its tree a level per forward).

`keep` copies the kept path's cells to the main id and drops every tree id; `crop` removes the
main id's cells past a length. One `llama_decode` runs every feed of a forward (one batch, each
token with its own position and ids), with logits only for the rows asked.
"""

from __future__ import annotations

import ctypes
import time
import weakref

import llama_cpp as ll
import numpy as np
import torch

from specbranch.backends.base import Capabilities, Feed, KVSequence
from specbranch.errors import SpecBranchError
from specbranch.models.gguf import GGUFModel

SEQUENCE_IDS = 256  # llama.cpp's most sequence ids per context (LLAMA_MAX_SEQ)
UBATCH = 512  # tokens per llama.cpp compute step (a longer prompt runs in several)


class _Sequence:
    """A `KVSequence`'s llama.cpp state: its main id, the ids its tree holds (`tree_ids`), and
    per tree node the id whose cells up to the node's position are its path (`node_ids`).
    `ids` lists every id it holds, for the release when it is collected."""

    def __init__(self, main: int) -> None:
        self.main = main
        self.tree_ids: list[int] = []
        self.node_ids: list[int] = []
        self.ids = [main]


class LlamaCppBackend:
    """A GGUF model on llama.cpp behind the `Backend` interface (module docstring).

    n_ctx: cells of the KV cache (every live sequence's linear part and trees together);
    threads: llama.cpp threads.
    """

    name = "llama.cpp"
    capabilities = Capabilities(
        batching=True, trees=True, hidden_states=False, processes=False, devices=("cpu",)
    )

    def __init__(self, model: GGUFModel, vocab_size: int, n_ctx: int, threads: int) -> None:
        self.model, self.vocab_size, self.n_ctx = model, vocab_size, n_ctx
        self.capacity = n_ctx
        self.device = torch.device("cpu")
        params = ll.llama_context_default_params()
        params.n_ctx = params.n_batch = n_ctx
        params.n_ubatch = min(UBATCH, n_ctx)
        params.n_seq_max = SEQUENCE_IDS
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True
        # Flash attention's CPU kernel rounds in half precision in an order that depends on where
        # cells sit: a kept branch's logits then move by ~4e-3 (tiny F32 models) against the same
        # tokens fed linearly; without it, ~3e-6.
        params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(model.ptr, params)
        if not self.ctx:
            raise SpecBranchError(f"{model.path}: llama.cpp could not make a context of {n_ctx} tokens")
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(n_ctx, 0, SEQUENCE_IDS)
        self.free_ids = list(range(SEQUENCE_IDS))
        weakref.finalize(self, _free_context, self.ctx, self.batch, model)

    # --- sequences ---------------------------------------------------------------------

    def new_state(self) -> _Sequence:
        state = _Sequence(self._take())
        weakref.finalize(state, self._release, state.ids)
        return state

    def _take(self) -> int:
        if not self.free_ids:
            raise SpecBranchError(f"llama.cpp backend: all {SEQUENCE_IDS} sequence ids are in use")
        return self.free_ids.pop()

    def _release(self, ids: list[int]) -> None:
        for seq_id in ids:
            ll.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
        self.free_ids.extend(ids)
        ids.clear()

    def _drop_tree(self, state: _Sequence) -> None:
        for seq_id in state.tree_ids:
            ll.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
            state.ids.remove(seq_id)
        self.free_ids.extend(state.tree_ids)
        state.tree_ids, state.node_ids = [], []

    def crop(self, seq: KVSequence, length: int) -> None:
        self._drop_tree(seq.state)
        ll.llama_memory_seq_rm(self.memory, seq.state.main, length, -1)

    def keep(self, seq: KVSequence, path: list[int]) -> None:
        state = seq.state
        if path:
            end = len(seq.tokens) + seq.levels[path[-1]]  # one past the last kept node's position
            ll.llama_memory_seq_cp(self.memory, state.node_ids[path[-1]], state.main, len(seq.tokens), end)
        self._drop_tree(state)

    # --- forwards ------------------------------------------------------------------------

    def forward(self, feeds: list[Feed]) -> list[torch.Tensor]:
        start = time.perf_counter()
        rows: list[list[int]] = []
        n = 0
        for feed in feeds:
            placed = self._place(feed)
            if n + len(placed) > self.n_ctx:
                total = n + len(placed)
                raise SpecBranchError(f"a forward of {total} tokens exceeds the context ({self.n_ctx})")
            for token, position, ids in placed:
                self._put(n, token, position, ids)
                n += 1
            rows.append(list(range(n - feed.rows, n)))
            for i in rows[-1]:
                self.batch.logits[i] = 1
        self.batch.n_tokens = n
        status = ll.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise SpecBranchError(f"llama.cpp could not run a forward of {n} tokens (status {status})")
        out = [self._logits(r) for r in rows]
        seconds = time.perf_counter() - start
        for feed in feeds:
            feed.seq.record(feed, seconds, n)
        return out

    def _place(self, feed: Feed) -> list[tuple[int, int, list[int]]]:
        """(token, position, sequence ids) of every token of a feed, after copying the cells its
        new leaves need (module docstring); each new node's path id is recorded."""
        seq, state = feed.seq, feed.seq.state
        prefix, first = len(seq.tokens), len(seq.parents)
        linear = prefix + len(feed.tail)
        parents, levels = feed.parents, feed.levels()
        inner = {p - first for p in parents if p >= first}
        below: list[list[int]] = [[] for _ in feed.nodes]  # the leaf ids below each new node
        for leaf in (i for i in range(len(feed.nodes)) if i not in inner):
            seq_id, node = self._take(), leaf
            state.ids.append(seq_id)
            state.tree_ids.append(seq_id)
            while True:
                below[node].append(seq_id)
                if parents[node] < first:
                    break
                node = parents[node] - first
            top = parents[node]  # -1 or an existing node: where the leaf's path leaves the feed
            if top < 0:
                ll.llama_memory_seq_cp(self.memory, state.main, seq_id, -1, -1)
            else:
                end = prefix + seq.levels[top]  # one past the existing node's position
                ll.llama_memory_seq_cp(self.memory, state.node_ids[top], seq_id, -1, end)
        leaves = sorted({s for ids in below for s in ids})
        placed = [(t, prefix + k, [state.main, *leaves]) for k, t in enumerate(feed.tail)]
        placed += [(t, linear + lv - 1, ids) for t, lv, ids in zip(feed.nodes, levels, below, strict=True)]
        state.node_ids.extend(ids[0] for ids in below)
        return placed

    def _put(self, i: int, token: int, position: int, ids: list[int]) -> None:
        batch = self.batch
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, len(ids), 0
        for k, seq_id in enumerate(ids):
            batch.seq_id[i][k] = seq_id

    def _logits(self, rows: list[int]) -> torch.Tensor:
        """The logits of batch rows `rows`: [len(rows), vocab_size] float32."""
        width = self.model.n_vocab
        out = np.empty((len(rows), self.vocab_size), dtype=np.float32)
        for j, i in enumerate(rows):
            pointer = ll.llama_get_logits_ith(self.ctx, i)
            out[j] = np.ctypeslib.as_array(pointer, shape=(width,))[: self.vocab_size]
        return torch.from_numpy(out)


def _free_context(ctx: ctypes.c_void_p, batch: ll.llama_batch, model: GGUFModel) -> None:
    """Free a context and its batch (the model, referenced here, outlives them)."""
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
