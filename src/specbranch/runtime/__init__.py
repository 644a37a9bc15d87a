"""Assembly: turning a method name and options into a running decoder.

`methods` is the registry of decoding methods (what the CLI, the benchmark, the server and
`build_decoder` read); `assembly` builds each method's decoder on a model pair: caches,
thread split, draft worker or inline drafter, the cost probe, H-RAD. The algorithms themselves
(`specbranch.decoders`) know nothing of processes, model loading, probes or predictors files.
"""

from __future__ import annotations

from specbranch.runtime.assembly import build_parallel
from specbranch.runtime.methods import METHODS, REGISTRY, MethodInfo, build_decoder, method_info

__all__ = ["METHODS", "REGISTRY", "MethodInfo", "build_decoder", "build_parallel", "method_info"]
