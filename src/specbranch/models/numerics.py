"""Numerics of loaded models: dtypes, the CPU's bf16 support, int8 drafts, float32 top logits."""

from __future__ import annotations

import functools
import platform
import warnings
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from specbranch.errors import SpecBranchError

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and feature flags (Linux /proc/cpuinfo; elsewhere the platform's
    processor name and no flags)."""

    name: str
    flags: frozenset[str]


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CpuInfo, read once: the one reader of /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            lines = info.read().splitlines()
    except OSError:
        return CpuInfo(platform.processor(), frozenset())
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = next((ln for ln in lines if ln.startswith("flags")), "").split(":", 1)[-1].split()
    return CpuInfo(name or platform.processor(), frozenset(flags))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16; Linux only).

    There bfloat16 weights halve the bytes read per token and the bf16 kernels stay fast for
    the few-token forwards of verification, while float32 matrix products over 2..16 tokens
    cost about twice a 1-token one. Measured on a 2-core AVX512-BF16 VM with the built-in
    1.5B target: one forward 0.20 s in bf16 vs 0.39 s in fp32, 8 tokens 0.22 s vs 0.78 s.
    """
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info().flags)


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """A torch dtype from a name.

    Default ("auto"): bfloat16 on CUDA and on CPUs with native bf16 arithmetic
    (`cpu_has_native_bf16`), float32 on other CPUs.
    """
    if dtype is None or dtype == "auto":
        fast_bf16 = device.startswith("cuda") or cpu_has_native_bf16()
        return torch.bfloat16 if fast_bf16 else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise SpecBranchError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_device(device: str) -> None:
    """Fail clearly when a CUDA device is asked for and not present."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecBranchError(f"device {device!r} requested but CUDA is not available on this machine")


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 quantization (per-channel weights) of every nn.Linear, on CPU."""
    if next(model.parameters()).device.type != "cpu":
        raise SpecBranchError("int8 dynamic quantization runs on CPU only")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch marks quantized tensor creation as deprecated
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


# The bound on a half-precision logit's error, relative to the row's largest |logit|, that
# `BandedHead` refines within: a logit rounded to bfloat16's 8-bit significand is off by at most
# 2^-8 of itself (measured on the built-in target over 617 positions: at most 2^-8.07 of the
# row's largest), doubled for kernels that accumulate in another order; FLOOR for rows near 0.
BAND = 2.0**-7
FLOOR = 2.0**-10


class BandedHead(torch.nn.Module):
    """An output projection in the weights' half precision, with float32 logits wherever the
    argmax could be.

    In bfloat16 the logits themselves are rounded to 8 bits of mantissa (steps of 0.125 near
    a logit of 20), so the top two tokens often tie exactly, and which one wins then depends
    on how many tokens the forward held: greedy speculative output would drift from AR at
    those ties. A float32 projection makes exact ties rare and leaves only genuine near-ties,
    but on a CPU it costs two to three times the half-precision one (the built-in target's
    151936 x 1536 head on 2 cores: 60 / 96 / 119 ms for 1 / 8 / 16 rows against 29 / 37 / 50).

    So each row is projected in half precision first, and every token whose rounded logit is
    within 2 s of the row's largest (s = BAND x the row's largest |logit| + FLOOR, a bound on
    any rounded logit's error) gets its logit recomputed in float32 from the same weights: the
    true argmax t is among them, since rounded(t) >= exact(t) - s >= exact(argmax of rounded)
    - s >= rounded max - 2 s. Greedy decoding therefore picks the float32 argmax. The other
    logits stay half precision, which is what the model's own head returns: a sampled
    request's distribution is this head's, for every method alike.
    """

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = head.in_features, head.out_features
        self.weight = torch.nn.Parameter(head.weight.detach(), requires_grad=False)  # [out, in] half
        bias = head.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, hidden.shape[-1]).to(self.weight.dtype)  # [n, in]
        # weight @ rows^T rather than rows @ weight^T: on CPU the vocabulary-long side as the
        # rows runs faster for the 2-32 positions a draft tree's verification needs.
        raw = (self.weight @ rows.T).T.float()  # [n, out], each rounded to half precision
        slack = BAND * raw.abs().amax(-1, keepdim=True) + FLOOR  # [n, 1] bounds each one's error
        logits = raw if self.bias is None else raw + self.bias  # [n, out]
        near = logits >= logits.amax(-1, keepdim=True) - 2 * slack  # [n, out]: could be the argmax
        cols = near.any(0).nonzero().squeeze(1)  # [c] near in some row
        exact = rows.float() @ self.weight[cols].float().T  # [n, c] float32
        if self.bias is not None:
            exact = exact + self.bias[cols]
        logits[:, cols] = torch.where(near[:, cols], exact, logits[:, cols])
        return logits.reshape(*hidden.shape[:-1], self.out_features)


def float32_logits(model: PreTrainedModel) -> PreTrainedModel:
    """Give a half-precision model float32 logits where its argmax is decided (`BandedHead`)."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear) and head.weight.dtype in (torch.bfloat16, torch.float16):
        model.set_output_embeddings(BandedHead(head))
    return model
