"""First-run progress of the built-in models: assembling with sha256 on a byte bar, transformers'
per-tensor GGUF bar routed into ours, and the summary line of a cache entry."""

from __future__ import annotations

import hashlib
import io
import os
from collections import namedtuple

import pytest

from specbranch.errors import SpecBranchError
from specbranch.models import builtin
from specbranch.models.builtin import BuiltinModel, assemble_gguf, concatenate_hashing
from specbranch.models.cache import byte_progress, cache_summary, format_size, gguf_tensor_progress

MiB = 1 << 20
Tensor = namedtuple("Tensor", "name n_bytes")  # what transformers' GGUF loop reads of a gguf ReaderTensor


class Terminal(io.StringIO):
    """A standard error that says it is a terminal, so bars draw into it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def parts(tmp_path):
    """Three chunk files of a few MB (random bytes) and their concatenation."""
    sizes = (2 * MiB + 5, 3 * MiB, 17)
    paths, data = [], b""
    for i, size in enumerate(sizes, start=1):
        chunk = os.urandom(size)
        path = tmp_path / f"part{i}"
        path.write_bytes(chunk)
        paths.append(path)
        data += chunk
    return paths, data


def test_concatenate_hashing_reports_every_byte(parts, tmp_path, monkeypatch):
    paths, data = parts
    monkeypatch.setattr(builtin, "CHUNK_BYTES", MiB)
    seen: list[int] = []
    size, digest = concatenate_hashing(paths, tmp_path / "whole", seen.append)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "whole").read_bytes() == data
    assert seen == [MiB, MiB, 5, MiB, MiB, MiB, 17]  # block by block, each file to its end


def fake_model(paths, tmp_path, monkeypatch, sha256: str, size: int) -> BuiltinModel:
    """A built-in model whose parts are importable modules `fakepart1..N` like the real packages."""
    for i, path in enumerate(paths, start=1):
        (tmp_path / f"fakepart{i}.py").write_text(f"def get_part_path():\n    return {str(path)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return BuiltinModel("fake", "a fake model", "fakepart", len(paths), sha256, size, "fakepart1..3")


def test_assemble_checks_the_pinned_sha256_on_a_byte_bar(parts, tmp_path, monkeypatch):
    paths, data = parts
    model = fake_model(paths, tmp_path, monkeypatch, hashlib.sha256(data).hexdigest(), len(data))
    monkeypatch.setattr("sys.stderr", Terminal())
    with byte_progress(model.name, 2 * model.size) as bar:
        assemble_gguf(model, tmp_path / "fake.gguf", bar.update)
        assert bar.n == len(data) and not bar.disable
    drawn = bar.fp.getvalue()
    assert "fake: " in drawn and "5.00M/10.0M" in drawn and "B/s" in drawn
    wrong = fake_model(paths, tmp_path, monkeypatch, "0" * 64, len(data))
    with pytest.raises(SpecBranchError, match="built-in model fake: assembled file has size"):
        assemble_gguf(wrong, tmp_path / "wrong.gguf", lambda n: None)


def test_the_bar_is_off_when_stderr_is_no_terminal(monkeypatch):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    with byte_progress("quiet", 100) as bar:
        bar.update(50)
        bar.set_postfix_str("converting")
        with gguf_tensor_progress(bar):
            assert [t.name for t in gguf_utils.tqdm([Tensor("a", 10), Tensor("b", 20)])] == ["a", "b"]
    assert bar.disable and stderr.getvalue() == ""


def test_gguf_tensor_bar_goes_to_ours_and_is_restored(monkeypatch):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    original, hf_bars = gguf_utils.tqdm, hf_logging.is_progress_bar_enabled()
    monkeypatch.setattr("sys.stderr", Terminal())
    tensors = [Tensor("a", 1000), Tensor("b", 3000), Tensor("c", 24)]
    with byte_progress("converting", 10**9) as bar:
        bar.update(5000)  # an earlier step's bytes
        with gguf_tensor_progress(bar):
            assert not hf_logging.is_progress_bar_enabled()  # transformers' other bars are off meanwhile
            seen = []
            for t in gguf_utils.tqdm(tensors, desc="Converting and de-quantizing GGUF tensors..."):
                seen.append((t.name, bar.n))
        assert seen == [("a", 5000), ("b", 6000), ("c", 9000)]  # counted once each tensor is done
        assert bar.n == bar.total == 5000 + 4024
    assert gguf_utils.tqdm is original and hf_logging.is_progress_bar_enabled() == hf_bars
    assert "de-quantizing" not in bar.fp.getvalue()


@pytest.mark.parametrize(
    "size,text",
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * MiB, "5.0 MiB"), (int(2.9 * 2**30), "2.9 GiB")],
)
def test_format_size(size, text):
    assert format_size(size) == text


def test_cache_summary_names_the_folder_and_its_size(tmp_path, monkeypatch):
    folder = tmp_path / ".cache" / "specbranch" / "converted" / "fake-0123"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * (3 * MiB))
    (folder / "sub" / "config.json").write_bytes(b"\0" * (MiB // 2))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_summary(folder) == "cache: ~/.cache/specbranch/converted/fake-0123 (3.5 MiB)"
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert cache_summary(folder) == f"cache: {folder} (3.5 MiB)"
