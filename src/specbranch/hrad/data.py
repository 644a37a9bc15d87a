"""H-RAD training data: one append-only file of (features, label) records.

Layout: the magic line `SBHRAD1\n`, then records, each an 8-byte little-endian length and a
`torch.save` payload (plain tensors and Python values, read back with weights_only=True).
The first record is the header (pair identity, K, feature width, collection settings); every
later record holds one prompt's samples: {"key", "features" [n, D] float16, "labels" [n]}.

Records are appended and flushed one prompt at a time, so an interrupted collection leaves a
readable file: a torn last record is ignored on reading and cut off when collection resumes,
and prompts whose record is complete are skipped.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import torch

from specbranch.errors import SpecBranchError

MAGIC = b"SBHRAD1\n"
_LENGTH = struct.Struct("<Q")


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(end offset, record) for every complete record after the magic line."""
    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise SpecBranchError(f"{path}: not an H-RAD data file")
        end = len(MAGIC)
        while True:
            head = f.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                return
            (size,) = _LENGTH.unpack(head)
            payload = f.read(size)
            if len(payload) < size:
                return  # torn last record (interrupted write)
            end += _LENGTH.size + size
            yield end, torch.load(io.BytesIO(payload), weights_only=True)


class DataWriter:
    """Appends records to a data file, resuming one written with the same header."""

    def __init__(self, path: str | Path, header: dict) -> None:
        self.path = Path(path)
        self.done: set[str] = set()
        end = 0
        if self.path.exists() and self.path.stat().st_size > 0:
            records = _records(self.path)
            first = next(records, None)
            if first is not None:  # else: not even the header was completed; start over
                end, old = first
                if old != header:
                    raise SpecBranchError(
                        f"{self.path} holds data collected with other settings; "
                        "choose another --out or delete it"
                    )
                for end, record in records:  # noqa: B007 (end: where the last complete record ends)
                    self.done.add(record["key"])
        self.file = self.path.open("r+b" if end else "wb")
        if end:
            self.file.truncate(end)  # drop a torn tail
            self.file.seek(end)
        else:
            self.file.write(MAGIC)
            self._write(header)

    def _write(self, record: dict) -> None:
        buffer = io.BytesIO()
        torch.save(record, buffer)
        payload = buffer.getvalue()
        self.file.write(_LENGTH.pack(len(payload)) + payload)
        self.file.flush()
        os.fsync(self.file.fileno())

    def append(self, key: str, features: torch.Tensor, labels: list[int]) -> None:
        """One prompt's samples: features [n, D], labels [n] (n may be 0)."""
        self._write({"key": key, "features": features.to(torch.float16), "labels": torch.tensor(labels)})
        self.done.add(key)

    def close(self) -> None:
        self.file.close()


def read_data(paths: list[str | Path]) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(header, features [N, D] float32, labels [N], sampled [N]) from data files of one pair.

    sampled[i]: sample i was collected at temperature > 0 (its file's header says so); the
    acceptance the labels record differs between greedy and sampled decoding.
    """
    header: dict | None = None
    features, labels, sampled = [], [], []
    for path in map(Path, paths):
        if not path.exists():
            raise SpecBranchError(f"H-RAD data file not found: {path}")
        records = _records(path)
        first = next(records, None)
        if first is None:
            raise SpecBranchError(f"{path}: empty H-RAD data file")
        this = first[1]
        if header is None:
            header = this
        elif (this["identity"], this["layers"]) != (header["identity"], header["layers"]):
            raise SpecBranchError(f"{path} was collected for another model pair or K than {paths[0]}")
        hot = this["sampling"]["temperature"] > 0
        for _, record in records:
            features.append(record["features"].float())
            labels.append(record["labels"])
            sampled.append(torch.full((len(record["labels"]),), hot))
    assert header is not None
    if not features or sum(len(y) for y in labels) == 0:
        raise SpecBranchError("the H-RAD data files hold no samples")
    return header, torch.cat(features), torch.cat(labels), torch.cat(sampled)
