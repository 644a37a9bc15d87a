import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
# Tiny test models are dominated by per-op overhead; one thread is ~3x faster than two.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _probe_cache(tmp_path_factory, monkeypatch):
    """Cost curves measured in tests (tiny models saved to temporary folders) go to a temporary
    folder, never to the user's model cache."""
    from specbranch.runtime import placement

    folder = tmp_path_factory.getbasetemp() / "probes"
    monkeypatch.setattr(placement, "probe_dir", lambda: folder)
