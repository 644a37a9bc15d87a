"""The seam between the decoding algorithms and a model runtime.

A *backend* owns one model and runs its forwards; a *sequence* (`KVSequence`) is one request's
KV cache on that model. Every forward of every method, draft or target, goes through
`Backend.forward`, over a batch of `Feed`s (one per sequence).

Terms:
- a sequence holds a *linear* part (committed tokens, `tokens`) and after it a *tree* of
  speculative nodes: node ids 0, 1, ... in the order they were fed, `parents[i]` node i's parent
  (-1: the linear part's last token). A node's *level* is 1 below the linear part, one more
  than its parent's below that; it sits at position len(tokens) + level - 1 and attends to the
  linear part, its ancestors and itself;
- a *feed* is what one forward adds to one sequence: `tail`, committed tokens appended to the
  linear part (only while the sequence has no tree), then `nodes` below existing or earlier
  new nodes, and `rows`, how many of the last fed positions' logits come back;
- `crop` keeps the first `length` linear tokens and drops the tree; `keep` makes a path of tree
  nodes from the linear part down (ids, parents first) the continuation of the linear part and
  drops the rest of the tree.

Rolling back after a rejection is `sync`: the KV is cropped to the longest common prefix of what
it holds and the committed sequence, never recomputing that prefix.

A backend declares what it can do (`Capabilities`); callers read the declaration, never the
backend's type. Backends are chosen in one place (`runtime.assembly`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from specbranch.token_tree import TokenTree


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.

    batching: feeds of several sequences run as one forward (otherwise the backend runs them
    one after the other); trees: feeds with tree nodes (each node attends to its ancestors
    only); hidden_states: forwards can keep the last layers' hidden states (H-RAD's features);
    processes: its model can be handed to a draft worker process (the parallel execution's
    second process); devices: the device types its models run on.
    """

    batching: bool
    trees: bool
    hidden_states: bool
    processes: bool
    devices: tuple[str, ...]


@dataclass
class Feed:
    """One sequence's part of a forward (module docstring): `tail` committed tokens, then tree
    `nodes` whose `parents` are -1, existing node ids, or ids of earlier nodes of this feed (new
    node i gets id len(seq.parents) + i); logits of the last `rows` fed positions come back."""

    seq: KVSequence
    tail: list[int]
    nodes: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    rows: int = 1

    def __post_init__(self) -> None:
        if self.tail and self.seq.parents:
            raise ValueError("committed tokens cannot follow tree nodes: crop or keep first")
        if len(self.nodes) != len(self.parents):
            raise ValueError("one parent per node")
        if not 0 < self.rows <= len(self.tail) + len(self.nodes):
            raise ValueError(f"{self.rows} rows asked of {len(self.tail) + len(self.nodes)} fed positions")

    def levels(self) -> list[int]:
        """The new nodes' levels (1: a child of the linear part's last token)."""
        levels = list(self.seq.levels)
        for parent in self.parents:
            levels.append(1 if parent < 0 else levels[parent] + 1)
        return levels[len(self.seq.levels) :]


class Backend(Protocol):
    """A model and its runtime (module docstring)."""

    name: str  # what runs the model, as metrics and `--backend` say it: "torch" or "llama.cpp"
    capabilities: Capabilities
    vocab_size: int  # logits are cut to this width (padding rows beyond the vocabulary dropped)
    device: torch.device
    capacity: int | None  # KV cells over all its sequences (None: bounded by memory only)

    def new_state(self) -> Any:
        """An empty cache for a new sequence (the backend's own representation)."""

    def forward(self, feeds: list[Feed]) -> list[torch.Tensor]:
        """Run the feeds, record them on their sequences (`KVSequence.record`); each feed's
        logits [rows, vocab_size]."""

    def crop(self, seq: KVSequence, length: int) -> None:
        """Drop the cache entries past the first `length` linear tokens (the tree included)."""

    def keep(self, seq: KVSequence, path: list[int]) -> None:
        """Move the entries of tree nodes `path` right after the linear part; drop the rest of
        the tree."""


class KVSequence:
    """One request's KV on a backend, and the bookkeeping every backend shares.

    busy_seconds / forwards: wall time of the forwards fed to this sequence, and their count;
    last_feed: (tokens the forward ran, seconds) of the last one.
    capture_layers: K > 0 makes every forward keep `last_hidden`, the hidden states of the last
    K layers at the last fed position, concatenated ([K * hidden]; backends with the
    `hidden_states` capability); 0 asks for none.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.capture_layers = 0
        self.reset()

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def reset(self) -> None:
        """Empty the cache and zero the counters (a new request)."""
        self.state = self.backend.new_state()
        self.tokens: list[int] = []  # the linear part
        self.nodes: list[int] = []  # tree nodes' tokens
        self.parents: list[int] = []
        self.levels: list[int] = []
        self.busy_seconds = 0.0
        self.forwards = 0
        self.last_feed = (0, 0.0)  # (tokens fed, seconds) of the last forward
        self.last_hidden: torch.Tensor | None = None

    def cache_length(self) -> int:
        """Entries in the cache: the linear tokens plus the tree's nodes."""
        return len(self.tokens) + len(self.nodes)

    def record(self, feed: Feed, seconds: float, batch: int | None = None) -> None:
        """Book a feed the backend ran in `seconds` (the whole forward's time); batch: the
        tokens that forward ran over all its feeds (default: this feed's), what `last_feed`
        pairs with the seconds, as a cost curve does."""
        levels = feed.levels()
        self.tokens.extend(feed.tail)
        self.nodes.extend(feed.nodes)
        self.parents.extend(feed.parents)
        self.levels.extend(levels)
        self.busy_seconds += seconds
        self.forwards += 1
        self.last_feed = (batch or len(feed.tail) + len(feed.nodes), seconds)

    def crop(self, length: int) -> None:
        """Keep the first `length` linear tokens; drop the rest and the tree."""
        self.backend.crop(self, length)
        del self.tokens[length:]
        self.nodes, self.parents, self.levels = [], [], []

    def keep(self, path: list[int]) -> None:
        """Make tree nodes `path` (a chain from the linear part down) linear; drop the rest."""
        self.backend.keep(self, path)
        self.tokens.extend(self.nodes[a] for a in path)
        self.nodes, self.parents, self.levels = [], [], []

    def common_length(self, seq: list[int]) -> int:
        """How many of seq's first tokens the linear part holds."""
        n = min(len(self.tokens), len(seq))
        if self.tokens[:n] == seq[:n]:
            return n
        return next(i for i in range(n) if self.tokens[i] != seq[i])

    def sync(self, seq: list[int], refeed: int) -> list[int]:
        """Crop to the longest common prefix of the linear part and `seq`, re-feeding at least
        its last `refeed` tokens (whose logits are wanted); the tail of seq still to feed."""
        common = min(self.common_length(seq), len(seq) - refeed)
        self.crop(common)
        return seq[common:]

    def linear_feed(self, seq: list[int], n: int = 1) -> Feed:
        """The feed that makes the cache hold seq, with the logits after its last n tokens."""
        return Feed(self, self.sync(seq, n), rows=n)

    def tree_feed(self, seq: list[int], tree: TokenTree) -> Feed:
        """The feed of seq (its uncached tail as a chain) and a draft tree hanging off its last
        token: logits after that token and after each node, [1 + len(tree), V]."""
        return Feed(self, self.sync(seq, 1), list(tree.tokens), list(tree.parents), 1 + len(tree))

    def logits_for(self, seq: list[int], n: int = 1) -> torch.Tensor:
        """Logits after each of the last n positions of seq: [n, V]; the cache holds seq."""
        return self.backend.forward([self.linear_feed(seq, n)])[0]

    def logits_for_tree(self, seq: list[int], tree: TokenTree) -> torch.Tensor:
        """One forward over seq's tail and a tree after it (`tree_feed`): [1 + len(tree), V]."""
        return self.backend.forward([self.tree_feed(seq, tree)])[0]

    def grow(self, nodes: list[int], parents: list[int], rows: int | None = None) -> torch.Tensor:
        """Feed tree nodes (below existing nodes or each other); logits after the last `rows`
        of them (default: all), [rows, V]."""
        return self.backend.forward([Feed(self, [], nodes, parents, rows or len(nodes))])[0]
