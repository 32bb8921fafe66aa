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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from cglib.images import ImageError, list_images, read_fitted, to_tensor

#: The three training domains, in the order their seeds are derived.
TRAINING_DOMAINS = ("photos", "cartoons", "cartoons_smoothed")
#: Folders of fewer images load without a progress bar: they take a moment, and a notebook
#: that builds many trainers (the ablations) would otherwise show a bar per folder per run.
LOADING_BAR_FROM = 500


class ImageFolder(Dataset):
    """The images under ``folder`` as a torch Dataset; items are (3, ``image_size``,
    ``image_size``) float32 tensors in [-1, 1], RGB.

    Images of another size are fitted (:func:`cglib.images.read_fitted`). ``in_memory``: read
    every image once into one uint8 array (N x S x S x 3: 196 KB per 256x256 image) and serve
    from there; unreadable files are then left out with a warning. Otherwise a file that fails
    to read later (it was fine when listed) is reported once per process with a warning naming
    it, and the next readable image is served in its place, so training goes on.
    """

    def __init__(self, folder: str | os.PathLike, image_size: int = 256,
                 in_memory: bool = False) -> None:
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.image_size = image_size
        self.unreadable: set[int] = set()
        self.images: np.ndarray | None = None
        if in_memory:
            self._load_all()

    def _load_all(self) -> None:
        images, files = [], []
        for path in tqdm(self.files, desc=f"loading {self.folder.name}", unit="image",
                         disable=len(self.files) < LOADING_BAR_FROM):
            try:
                images.append(read_fitted(path, self.image_size))
                files.append(path)
            except ImageError as error:
                warnings.warn(f"{error}; it is left out of {self.folder}", stacklevel=3)
        if not images:
            raise FileNotFoundError(f"no readable image in {self.folder}")
        self.files, self.images = files, np.stack(images)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``image_size`` x ``image_size`` x 3 uint8 RGB, or the next
        readable one when it cannot be read (see the class notes)."""
        if self.images is not None:
            return self.images[index]
        for offset in range(len(self.files)):
            candidate = (index + offset) % len(self.files)
            if candidate in self.unreadable:
                continue
            try:
                return read_fitted(self.files[candidate], self.image_size)
            except ImageError as error:
                self.unreadable.add(candidate)
                warnings.warn(f"{error}; another image is used in its place", stacklevel=2)
        raise RuntimeError(f"no image under {self.folder} can be read any more")

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(self.read(index))[0]


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

    def __init__(self, dataset: ImageFolder, batch_size: int, seed: int, device: torch.device,
                 start: int = 0, flip: bool = True, workers: int = 0, rank: int = 0,
                 world: int = 1) -> None:
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


def training_streams(root: str | os.PathLike, domains: tuple[str, ...], batch_size: int,
                     image_size: int, seed: int, device: torch.device,
                     positions: dict[str, int] | None = None, flip: bool = True,
                     workers: int = 0, in_memory: bool = False, rank: int = 0, world: int = 1,
                     datasets: dict[str, ImageFolder] | None = None) -> dict[str, Stream]:
    """One :class:`Stream` per domain of ``domains`` (of :data:`TRAINING_DOMAINS`) of the
    data set at ``root``, each with its own seed (``seed * 3 + 0, 1, 2``), starting at the
    global batch ``positions[domain]`` (0 when not given). ``datasets``: the domains' image
    folders read so far, reused and completed (a trainer keeps them across its phases)."""
    positions, datasets = positions or {}, {} if datasets is None else datasets
    for domain in domains:
        if domain not in datasets:
            datasets[domain] = ImageFolder(Path(root) / domain, image_size, in_memory)
    return {
        domain: Stream(datasets[domain], batch_size, seed * 3 + TRAINING_DOMAINS.index(domain),
                       device, positions.get(domain, 0), flip, workers, rank, world)
        for domain in domains
    }


def load_images(folder: str | os.PathLike, count: int, image_size: int) -> list[np.ndarray]:
    """The first ``count`` readable images of ``folder`` in sorted order (fewer if it holds
    fewer), each ``image_size`` x ``image_size`` x 3 uint8 RGB: fixed photos to follow during
    training. Unreadable files are skipped with a warning."""
    found = []
    for path in list_images(folder):
        if len(found) == count:
            break
        try:
            found.append(read_fitted(path, image_size))
        except ImageError as error:
            warnings.warn(f"{error}; it is skipped", stacklevel=2)
    return found
