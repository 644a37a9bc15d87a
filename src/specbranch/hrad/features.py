"""H-RAD's input features, captured on the target side at verification points only.

z = concat(hidden states of the target's last K layers at the last verified position,
           the target's input embedding of the newest committed token)     # [(K + 1) * hidden]

"Last verified position" is the position whose target distribution decided the newest token
(after a branch hit: the end of U, whose output verified the branch root), so z describes the
freshest verified context plus the token just chosen. The hidden states come from the target
forward that verified the round (`KVSequence.capture_layers`); nothing is kept for the rest
of the sequence.
"""

from __future__ import annotations

import torch

from specbranch.backends.base import KVSequence

DEFAULT_LAYERS = 4


def feature_dim(hidden_size: int, layers: int) -> int:
    """Width of z for a target with `hidden_size` and K = `layers`."""
    return (layers + 1) * hidden_size


@torch.inference_mode()
def capture(target: KVSequence, newest_token: int) -> torch.Tensor:
    """z for the target's last forward and the newest committed token: [(K + 1) * hidden] float32."""
    if target.last_hidden is None:
        raise RuntimeError("the target sequence captured no hidden states (set capture_layers first)")
    embedding = target.backend.input_embedding(newest_token)  # [hidden]
    return torch.cat([target.last_hidden, embedding]).cpu()
