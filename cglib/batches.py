"""What training draws from: one endless stream of batches per domain, in an order fixed by a
key, so that a resumed run, or a run on several processes, sees exactly the batches of an
uninterrupted single-process run.

The paper samples photos p, cartoons c and edge-smoothed cartoons e from three unpaired sets;
the authors' code draws them from three independently shuffled loaders. Here each domain's
order comes from its own seed: epoch k of a domain is a permutation drawn from a generator
seeded with ``(seed, k)``, and the left-right flip of each image in global batch b from a
generator seeded with ``(seed, b)``. Nothing depends on the order in which worker processes
finish, and a stream restarted at batch b continues exactly where it stopped. With several
processes (``world`` > 1, see :mod:`cglib.distributed`), process r takes the r-th slice of
every global batch: the data order and the global batch do not depend on the process count.
:class:`TrainingStreams` builds a phase's streams from saved positions and keeps them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from cglib import data

#: The three training domains, in the order their seeds are derived.
TRAINING_DOMAINS = ("photos", "cartoons", "cartoons_smoothed")
def _keyed(seed: int, key: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + key)


class KeyedBatches(Sampler[list[int]]):
    """Endless batches of indices into a domain of ``size`` images, in an order fixed by
    ``seed``; process ``rank`` of ``world`` gets its slice of each global batch of
    ``batch_size``.

    Epoch e is a permutation drawn from ``(seed, e)``; the last ``size % batch_size`` images
    of each permutation are left for that epoch. ``start``: global batches already handed
    out (a resumed run). :attr:`position` counts them.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        if size < batch_size:
            raise ValueError(f"a domain holds {size} images, fewer than one batch of "
                             f"{batch_size}; add images or lower batch_size")
        if batch_size % world:
            raise ValueError(f"batch_size={batch_size} does not split evenly over {world} "
                             "processes; use a multiple of the process count")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.batches_per_epoch = size // batch_size
        self.position = start

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch_size // self.world
        while True:
            epoch, offset = divmod(self.position, self.batches_per_epoch)
            order = torch.randperm(self.size, generator=_keyed(self.seed, epoch))
            for batch in range(offset, self.batches_per_epoch):
                self.position += 1
                first = batch * self.batch_size + self.rank * share
                yield order[first:first + share].tolist()


def flips(seed: int, position: int, batch_size: int, rank: int = 0, world: int = 1
          ) -> torch.Tensor:
    """Which images of global batch ``position`` are mirrored left-right (probability 1/2
    each), drawn from ``(seed, position)``: a bool tensor of this process's share."""
    share = batch_size // world
    mirror = torch.rand(batch_size, generator=_keyed(seed + 7_919, position)) < 0.5
    return mirror[rank * share:(rank + 1) * share]


class Stream:
    """Endless batches (N, 3, S, S) float32 in [-1, 1] of one domain on ``device``, N the
    process's share of ``batch_size``, flipped at random when ``flip``; :attr:`position`
    counts the global batches handed out (to save, and to resume with ``start``)."""

    def __init__(self, dataset: data.ImageFolder, batch_size: int, seed: int,
                 device: torch.device, start: int = 0, flip: bool = True, workers: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        self.sampler = KeyedBatches(len(dataset), batch_size, seed, start, rank, world)
        self.seed, self.flip, self.device = seed, flip, device
        self.position, self.rank, self.world = start, rank, world
        loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        self._batches = iter(loader)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self._batches).to(self.device, non_blocking=True)
        if self.flip:
            mirror = flips(self.seed, self.position, self.sampler.batch_size, self.rank,
                           self.world).to(self.device)
            batch = torch.where(mirror.view(-1, 1, 1, 1), batch.flip(-1), batch)
        self.position += 1
        return batch


class TrainingStreams:
    """The streams training draws from, for the data set at ``root``: one :class:`Stream` per
    domain of a phase, each domain with its own seed (``seed * 3 + 0, 1, 2`` in the order of
    :data:`TRAINING_DOMAINS`), batches of ``batch_size`` images fitted to ``image_size``
    (:class:`cglib.data.ImageFolder`, read into memory once when ``in_memory``), flipped at
    random when ``flip``, read by ``workers`` processes, process ``rank`` of ``world`` taking
    its slice of each global batch; in channels-last memory order when ``channels_last``.

    It owns what it built: each domain's image folder is read once and reused by every
    phase, and the streams of the newest phase are kept while they stand where the caller's
    saved positions say.
    """

    def __init__(self, root: str | os.PathLike, *, batch_size: int, image_size: int, seed: int,
                 device: torch.device, flip: bool = True, workers: int = 0,
                 in_memory: bool = False, rank: int = 0, world: int = 1,
                 channels_last: bool = False) -> None:
        self.root, self.batch_size, self.image_size = Path(root), batch_size, image_size
        self.seed, self.device, self.flip, self.workers = seed, device, flip, workers
        self.in_memory, self.rank, self.world = in_memory, rank, world
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._datasets: dict[str, data.ImageFolder] = {}
        self._streams: dict[str, Stream] = {}

    def dataset(self, domain: str) -> data.ImageFolder:
        """The image folder of ``domain`` (of :data:`TRAINING_DOMAINS`), read on first use."""
        if domain not in self._datasets:
            self._datasets[domain] = data.ImageFolder(self.root / domain, self.image_size,
                                                      self.in_memory)
        return self._datasets[domain]

    def streams(self, domains: tuple[str, ...], positions: dict[str, int] | None = None
                ) -> dict[str, Stream]:
        """One :class:`Stream` per domain of ``domains`` (of :data:`TRAINING_DOMAINS`),
        starting at the global batch ``positions[domain]`` (0 when not given, e.g. a new run).
        The streams of the previous call are returned again when they are of the same domains
        and stand at ``positions`` (the usual case: the caller saves their positions after
        each step); otherwise new ones are built, so a resumed run continues exactly."""
        positions = positions or {}
        if tuple(self._streams) != tuple(domains) or any(
                stream.position != positions.get(domain, 0)
                for domain, stream in self._streams.items()):
            self._streams = {
                domain: Stream(self.dataset(domain), self.batch_size,
                               self.seed * 3 + TRAINING_DOMAINS.index(domain), self.device,
                               positions.get(domain, 0), self.flip, self.workers, self.rank,
                               self.world)
                for domain in domains
            }
        return self._streams

    def next_batch(self, domains: tuple[str, ...], positions: dict[str, int]
                   ) -> dict[str, torch.Tensor]:
        """A batch per domain of ``domains``, (N, 3, S, S) in [-1, 1], from the streams at
        ``positions`` (:meth:`streams`); ``positions`` is moved on past it, for the caller to
        save with its checkpoint."""
        streams = self.streams(domains, positions)
        batch = {domain: next(stream).contiguous(memory_format=self.memory_format)
                 for domain, stream in streams.items()}
        positions.update({domain: stream.position for domain, stream in streams.items()})
        return batch
