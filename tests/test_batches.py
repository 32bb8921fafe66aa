"""cglib.batches: the keyed, resumable, shardable streams training draws from."""

import cv2
import numpy as np
import pytest
import torch

from cglib import batches, data
from cglib.images import read_fitted, write_image


def picture(seed, height=48, width=64):
    """Smooth random colours, asymmetric left-right (so a flip shows)."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def numbered(folder, count, size=16):
    """``count`` flat images whose red value is their index: a batch says which it holds."""
    for index in range(count):
        image = np.zeros((size, size, 3), np.uint8)
        image[..., 0] = index
        image[:, : size // 2, 1] = 255  # left half bright: a flip shows
        write_image(folder / f"{index:03d}.png", image)
    return folder


def indices(batch):
    return [round((value + 1) * 127.5) for value in batch[:, 0, 0, -1].tolist()]


def flipped(batch):
    return [bool(value < 0) for value in batch[:, 1, 0, 0].tolist()]


def test_keyed_batches_continue_where_they_stopped():
    straight = iter(batches.KeyedBatches(10, 3, seed=1))
    first = [next(straight) for _ in range(7)]  # crosses an epoch boundary (3 batches each)
    resumed = iter(batches.KeyedBatches(10, 3, seed=1, start=4))
    assert [next(resumed) for _ in range(3)] == first[4:7]
    assert sorted(sum(first[:3], [])) != list(range(9))  # shuffled, 9 of 10 images per epoch
    assert len(set(sum(first[:3], []))) == 9  # no image twice in an epoch
    other = iter(batches.KeyedBatches(10, 3, seed=2))
    assert [next(other) for _ in range(3)] != first[:3]


def test_processes_take_their_slice_of_the_same_global_batches():
    whole = iter(batches.KeyedBatches(12, 4, seed=5))
    halves = [iter(batches.KeyedBatches(12, 4, seed=5, rank=rank, world=2)) for rank in (0, 1)]
    for _ in range(5):
        assert next(whole) == next(halves[0]) + next(halves[1])
    with pytest.raises(ValueError, match="fewer than one batch"):
        batches.KeyedBatches(2, 4, seed=0)
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        batches.KeyedBatches(12, 4, seed=0, world=3)


def test_flips_are_keyed_half_the_time_and_sliced_per_process():
    draws = torch.cat([batches.flips(3, position, 8) for position in range(50)])
    assert 150 < int(draws.sum()) < 250
    assert torch.equal(batches.flips(3, 7, 8), batches.flips(3, 7, 8))
    assert not torch.equal(batches.flips(3, 7, 8), batches.flips(4, 7, 8))
    parts = [batches.flips(3, 7, 8, rank, 2) for rank in (0, 1)]
    assert torch.equal(torch.cat(parts), batches.flips(3, 7, 8))


def test_streams_repeat_resume_and_split_exactly(tmp_path):
    folder = numbered(tmp_path / "photos", 10)
    dataset = data.ImageFolder(folder, 16)
    cpu = torch.device("cpu")
    straight = batches.Stream(dataset, 4, seed=2, device=cpu)
    drawn = [next(straight) for _ in range(6)]
    assert [len(set(indices(b))) for b in drawn] == [4] * 6 and straight.position == 6
    assert any(flipped(b)[i] for b in drawn for i in range(4))  # some images are mirrored
    assert not all(flipped(b)[i] for b in drawn for i in range(4))
    resumed = batches.Stream(dataset, 4, seed=2, device=cpu, start=3)
    assert all(torch.equal(next(resumed), drawn[k]) for k in range(3, 6))
    parts = [batches.Stream(dataset, 4, seed=2, device=cpu, rank=r, world=2) for r in (0, 1)]
    for k in range(6):
        assert torch.equal(torch.cat([next(part) for part in parts]), drawn[k])


def test_streams_with_worker_processes_give_the_same_batches(tmp_path):
    folder = numbered(tmp_path / "photos", 10)
    cpu = torch.device("cpu")
    alone = batches.Stream(data.ImageFolder(folder, 16), 2, seed=4, device=cpu)
    workers = batches.Stream(data.ImageFolder(folder, 16), 2, seed=4, device=cpu, workers=2)
    for _ in range(7):
        assert torch.equal(next(alone), next(workers))


def reference_batch(root, domain, position, batch_size, size, seed, rank=0, world=1):
    """Global batch ``position`` of ``domain``, this process's share, worked out from the
    documented keys alone: the domain's seed ``seed * 3 + i``, epoch e's order a permutation
    from key (seed, e), the flips from key (seed + 7919, position)."""
    paths = sorted((root / domain).iterdir())
    domain_seed = seed * 3 + batches.TRAINING_DOMAINS.index(domain)
    per_epoch = len(paths) // batch_size
    epoch, offset = divmod(position, per_epoch)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(
        domain_seed * 1_000_003 + epoch))
    share = batch_size // world
    first = offset * batch_size + rank * share
    pixels = np.stack([read_fitted(paths[i], size) for i in order[first:first + share]])
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    mirror = torch.rand(batch_size, generator=torch.Generator().manual_seed(
        (domain_seed + 7_919) * 1_000_003 + position)) < 0.5
    mirror = mirror[rank * share:(rank + 1) * share]
    return torch.where(mirror.view(-1, 1, 1, 1), batch.flip(-1), batch)


def mixed_set(root):
    """Three training domains of 11, 9 and 9 images of different sizes (fitted when read)."""
    counts = (11, 9, 9)
    for number, (domain, count) in enumerate(zip(batches.TRAINING_DOMAINS, counts, strict=True)):
        for index in range(count):
            write_image(root / domain / f"{index:03d}.png",
                        picture(number * 100 + index, 36, 40 + index))
    return root


@pytest.mark.parametrize("in_memory, rank, world", [(False, 0, 1), (True, 1, 2)])
def test_training_streams_draw_the_keyed_batches_from_saved_positions(tmp_path, in_memory,
                                                                       rank, world):
    root = mixed_set(tmp_path)
    positions = {"photos": 3, "cartoons": 1}  # cartoons_smoothed: not saved, so 0
    streams = batches.TrainingStreams(root, batch_size=4, image_size=24, seed=5,
                                      device=torch.device("cpu"), in_memory=in_memory,
                                      rank=rank, world=world).streams(
        batches.TRAINING_DOMAINS, positions)
    assert list(streams) == list(batches.TRAINING_DOMAINS)
    for domain, stream in streams.items():
        start = positions.get(domain, 0)
        for position in range(start, start + 4):  # crosses an epoch (2 batches of 4 each)
            expected = reference_batch(root, domain, position, 4, 24, 5, rank, world)
            assert torch.equal(next(stream), expected), (domain, position)
        assert stream.position == start + 4


def test_training_streams_keep_a_phases_streams_and_read_each_folder_once(tmp_path,
                                                                         monkeypatch):
    root = mixed_set(tmp_path)
    read = []
    monkeypatch.setattr(data, "read_fitted",
                        lambda path, size: read.append(path.name) or read_fitted(path, size))
    source = batches.TrainingStreams(root, batch_size=4, image_size=24, seed=0,
                                     device=torch.device("cpu"), flip=False, in_memory=True)
    init = source.streams(("photos",), {})
    assert len(read) == 11  # the photos, read once into memory
    next(init["photos"])
    assert source.streams(("photos",), {"photos": 1}) is init  # where the caller saved it
    again = source.streams(("photos",), {"photos": 0})  # a position it does not stand at
    assert again is not init and again["photos"].position == 0
    both = source.streams(batches.TRAINING_DOMAINS, {"photos": 1})
    assert both["photos"].position == 1 and both["cartoons"].position == 0
    assert len(read) == 11 + 9 + 9  # the photos were not read again
    assert torch.equal(next(both["photos"]), next(init["photos"]))  # both at batch 1


def test_next_batch_moves_the_saved_positions_on_and_keeps_the_memory_order(tmp_path):
    root = mixed_set(tmp_path)
    source = batches.TrainingStreams(root, batch_size=4, image_size=24, seed=5,
                                     device=torch.device("cpu"), channels_last=True)
    positions = {"photos": 2}
    batch = source.next_batch(("photos", "cartoons"), positions)
    assert positions == {"photos": 3, "cartoons": 1}
    for domain, start in (("photos", 2), ("cartoons", 0)):
        expected = reference_batch(root, domain, start, 4, 24, 5, 0, 1)
        assert torch.equal(batch[domain], expected)
        assert batch[domain].is_contiguous(memory_format=torch.channels_last)
    again = source.next_batch(("photos", "cartoons"), positions)
    assert torch.equal(again["photos"], reference_batch(root, "photos", 3, 4, 24, 5, 0, 1))
