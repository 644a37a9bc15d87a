"""Models: loading (`loading`), numerics (`numerics`), the cache and GGUF conversion (`cache`),
the built-in pip-shipped models (`builtin`) and the target/draft pair (`pair`).

Import order is one-way: cache <- builtin <- loading <- pair; numerics stands alone.
"""

from __future__ import annotations

from specbranch.models.loading import load_model
from specbranch.models.pair import ModelPair, load_pair

__all__ = ["ModelPair", "load_model", "load_pair"]
