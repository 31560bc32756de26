"""Which examples go together: packed rows, length-grouped batches or plain random batches.

A batch is a list of rows; a row is a list of example indices (one, unless packed). Plans are a pure
function of (lengths, seed, epoch, rank), which is what makes a resumed run see the very batches an
uninterrupted one would have seen.

`auto` packs where the attention kernel skips across-example work (flash-attention varlen, flex
attention) and groups by length elsewhere: packed rows waste the least padding, but under SDPA each
packed row attends over its full length behind a block-diagonal mask, which costs more than the
padding it saves. The measurements behind this choice are in benchmarks/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from promptly.data.config import Batching

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention", "kernels-community/flash-attn",
                    "kernels-community/vllm-flash-attn3")


def resolve_batching(batching: Batching | str, attn_implementation: str | None) -> Batching:
    """`auto` becomes packed with attention kernels that skip across-example work, grouped otherwise."""
    batching = Batching(batching)
    if batching != Batching.auto:
        return batching
    return Batching.packed if attn_implementation in VARLEN_ATTENTION else Batching.grouped


def pack_rows(order: Sequence[int], lengths: np.ndarray, max_length: int, window: int = 512) -> list[list[int]]:
    """First-fit-decreasing bin packing within windows of `window` examples (kept in `order` across
    windows, so shuffling still mixes the data)."""
    rows: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -int(lengths[i]))
        bins: list[list[int]] = []
        room: list[int] = []
        for i in chunk:
            n = int(lengths[i])
            if n > max_length:
                raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
            for b, free in enumerate(room):
                if n <= free:
                    bins[b].append(i)
                    room[b] -= n
                    break
            else:
                bins.append([i])
                room.append(max_length - n)
        rows.extend(bins)
    return rows


def plan_batches(lengths: np.ndarray, batching: Batching, batch_size: int, max_length: int, shuffle: bool,
                 seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[list[list[int]]]:
    """Every batch of one epoch for one rank (ranks get the same number of batches)."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n).tolist() if shuffle else list(range(n))
    if batching == Batching.packed:
        rows = pack_rows(order, lengths, max_length)
    elif batching == Batching.grouped:
        # Mega-batches of 64 batches sorted by length (as transformers' LengthGroupedSampler does);
        # without shuffling, one global sort.
        mega = batch_size * 64 if shuffle else max(n, 1)
        rows = []
        for start in range(0, n, mega):
            rows.extend([i] for i in sorted(order[start : start + mega], key=lambda i: -int(lengths[i])))
    else:
        rows = [[i] for i in order]
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    if world_size > 1:
        usable = len(batches) - len(batches) % world_size
        batches = batches[rank:usable:world_size]
    return batches


class EpochBatchSampler(Sampler[list[list[int]]]):
    """Yields one epoch's plan, from `start` on; `set_epoch` is found by Lightning via `.sampler`."""

    def __init__(self, lengths: np.ndarray, batching: Batching, batch_size: int, max_length: int,
                 shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.lengths, self.batching, self.batch_size = lengths, batching, batch_size
        self.max_length, self.shuffle, self.seed = max_length, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0
        self.sampler = self  # lightning's _set_sampler_epoch looks at batch_sampler.sampler.set_epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def plan(self) -> list[list[list[int]]]:
        return plan_batches(self.lengths, self.batching, self.batch_size, self.max_length, self.shuffle,
                            self.seed, self.epoch, self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[list[int]]]:
        batches = self.plan()
        start, self.start = self.start, 0
        yield from batches[start:]

    def __len__(self) -> int:
        return len(self.plan())


class RowDataset(Dataset[list[tuple[np.ndarray, int]]]):
    """Maps a row (list of example indices) to its examples; the batch sampler yields lists of rows."""

    def __init__(self, examples: Any) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, row: Any) -> list[tuple[np.ndarray, int]]:
        return [self.examples[i] for i in row]


class ResumableDataLoader(DataLoader[Any]):
    """A DataLoader Lightning saves in checkpoints (state_dict/load_state_dict): a run resumed from a
    mid-epoch checkpoint continues with the next batch of the same epoch plan."""

    batch_sampler: EpochBatchSampler

    def __init__(self, dataset: RowDataset, batch_sampler: EpochBatchSampler, collate_fn: Any,
                 num_workers: int = 0) -> None:
        # Its own generator: creating an iterator must not draw from the global RNG, or a resumed run
        # (which creates one at a different moment) would get different dropout masks.
        generator = torch.Generator().manual_seed(batch_sampler.seed)
        super().__init__(dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers,
                         pin_memory=torch.cuda.is_available(), persistent_workers=False, generator=generator)
        self._consumed = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._consumed = self.batch_sampler.start
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.epoch = int(state["epoch"])
        self.batch_sampler.start = int(state["consumed"])
        self._consumed = int(state["consumed"])
