"""Token files written once by prepare_data and memory-mapped by every rank: the dataset never sits
in Python objects, and a DDP run retrieves from the store only once (on rank 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

TOKEN_DTYPE = np.int32


class TokenFileWriter:
    """Appends examples to `<split>.tokens` (int32) and their (offset, length, prompt_len) to an index."""

    def __init__(self, directory: Path, split: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.split = directory, split
        self._tmp_tokens = directory / f".{split}.tokens.{os.getpid()}.tmp"  # jobs may share a cache dir
        self._file: BinaryIO = self._tmp_tokens.open("wb")
        self._index: list[tuple[int, int, int]] = []
        self._offset = 0

    def add(self, input_ids: list[int], prompt_len: int) -> None:
        if not 0 <= prompt_len < len(input_ids):
            raise ValueError(f"an example needs at least one supervised token (prompt_len={prompt_len}, "
                             f"length={len(input_ids)})")
        self._file.write(np.asarray(input_ids, dtype=TOKEN_DTYPE).tobytes())
        self._index.append((self._offset, len(input_ids), prompt_len))
        self._offset += len(input_ids)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Publish the files (renamed into place, so a crash never leaves a half-written split)."""
        self._file.close()
        index = np.asarray(self._index, dtype=np.int64).reshape(-1, 3)
        tmp_index = self.directory / f".{self.split}.index.{os.getpid()}.npy"
        np.save(tmp_index, index)
        self._tmp_tokens.replace(self.directory / f"{self.split}.tokens")
        tmp_index.replace(self.directory / f"{self.split}.index.npy")


@dataclass
class TokenFile:
    """Read side: example i is tokens[offset:offset+length], the first prompt_len of them masked."""

    tokens: np.ndarray
    index: np.ndarray

    @classmethod
    def open(cls, directory: Path, split: str) -> TokenFile:
        index = np.load(directory / f"{split}.index.npy")
        path = directory / f"{split}.tokens"
        tokens = (np.memmap(path, dtype=TOKEN_DTYPE, mode="r") if path.stat().st_size
                  else np.zeros(0, dtype=TOKEN_DTYPE))
        return cls(tokens=tokens, index=index)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return self.index[:, 1]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        offset, length, prompt_len = (int(x) for x in self.index[i])
        return np.asarray(self.tokens[offset : offset + length]), prompt_len
