import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# Tiny test models are dominated by per-op overhead; one thread is ~3x faster than two.
torch.set_num_threads(1)
