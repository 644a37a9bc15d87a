"""A GGUF file loaded by llama.cpp (through llama-cpp-python), for the llama.cpp backend.

`GGUFModel` is what a `ModelPair` holds in place of a transformers model when the models run on
llama.cpp: the file is memory-mapped as it is (no conversion), and the model's vocabulary width,
training context and end-of-generation tokens are read from it; the context window used is
the smaller of that and CONTEXT (a llama.cpp context allocates its whole KV cache up front).
The backend (`backends/llamacpp.py`, made in `runtime/backends.py`) runs it. llama.cpp's own
log lines are silenced.
"""

from __future__ import annotations

import ctypes
import weakref
from pathlib import Path

import llama_cpp as ll

from specbranch.errors import SpecBranchError

_silence = ll.llama_log_callback(lambda level, text, data: None)  # kept alive: llama.cpp calls it
ll.llama_log_set(_silence, ctypes.c_void_p(0))
ll.llama_backend_init()

CONTEXT = 8192  # the most tokens of context a GGUF model is given (its KV cache's cells)


class GGUFModel:
    """A GGUF model loaded by llama.cpp.

    path: the file; n_vocab: rows of its output layer; n_ctx_train: its training context;
    context: the window it runs with; eog_ids: the tokens llama.cpp treats as end of generation
    (EOS, end of turn).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SpecBranchError(f"model path does not exist: {path}")
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        self.ptr = ll.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.ptr:
            raise SpecBranchError(f"{path}: llama.cpp could not load this GGUF file")
        weakref.finalize(self, ll.llama_model_free, self.ptr)
        vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_vocab = ll.llama_vocab_n_tokens(vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.context = min(self.n_ctx_train, CONTEXT)
        self.eog_ids = frozenset(t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(vocab, t))

    def __repr__(self) -> str:
        return f"GGUFModel({str(self.path)!r})"

    @property
    def name_or_path(self) -> str:
        return str(self.path)
