"""specbranch: lossless speculative decoding (AR, SD, PEARL, SpecBranch) for Hugging Face LMs."""

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine, GenerationResult, generate
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair, load_pair

__all__ = [
    "Engine",
    "GenerationConfig",
    "GenerationResult",
    "ModelPair",
    "SamplingParams",
    "SpecBranchError",
    "SpeculativeConfig",
    "generate",
    "load_pair",
]
