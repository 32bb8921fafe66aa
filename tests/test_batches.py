"""cglib.batches: image folders as tensors, and the keyed, resumable, shardable streams."""

import warnings

import cv2
import numpy as np
import pytest
import torch

from cglib import batches
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


def test_image_folder_items_are_rgb_tensors_in_minus_one_to_one(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[0, 0] = (255, 0, 0)
    image[0, 1] = (0, 255, 127)
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.png", picture(0, 64, 80))  # fitted on the fly
    dataset = batches.ImageFolder(tmp_path, image_size=32)
    item = dataset[0]
    assert item.dtype == torch.float32 and item.shape == (3, 32, 32)
    assert item[:, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert item[:, 0, 1].tolist() == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1])
    expected = read_fitted(tmp_path / "b.png", 32).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(dataset[1].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_in_memory_serves_the_same_items_and_leaves_bad_files_out(tmp_path):
    for index in range(3):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    (tmp_path / "1b.png").write_text("not an image")
    with pytest.warns(UserWarning, match=r"1b.png: not an image.*left out"):
        memory = batches.ImageFolder(tmp_path, 24, in_memory=True)
    assert len(memory) == 3 and memory.images.dtype == np.uint8
    assert memory.images.shape == (3, 24, 24, 3)
    (tmp_path / "1b.png").unlink()
    disk = batches.ImageFolder(tmp_path, 24)
    for index in range(3):
        assert torch.equal(memory[index], disk[index])


def test_only_a_large_folder_loads_with_a_progress_bar(tmp_path, monkeypatch, capsys):
    for index in range(3):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    batches.ImageFolder(tmp_path, 24, in_memory=True)
    assert "loading" not in capsys.readouterr().err  # a few images: no bar
    monkeypatch.setattr(batches, "LOADING_BAR_FROM", 3)
    batches.ImageFolder(tmp_path, 24, in_memory=True)
    assert f"loading {tmp_path.name}" in capsys.readouterr().err


def test_a_file_that_breaks_during_training_is_reported_once_and_replaced(tmp_path):
    for index in range(4):
        write_image(tmp_path / f"{index}.png", picture(index, 24, 24))
    dataset = batches.ImageFolder(tmp_path, 24)
    (tmp_path / "1.png").write_bytes(b"")  # broken after listing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = [dataset[index] for index in range(4)]
        second = [dataset[index] for index in range(4)]
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 1 and "1.png: empty file" in messages[0]
    assert torch.equal(first[1], first[2]) and torch.equal(second[1], first[2])


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
    dataset = batches.ImageFolder(folder, 16)
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
    alone = batches.Stream(batches.ImageFolder(folder, 16), 2, seed=4, device=cpu)
    workers = batches.Stream(batches.ImageFolder(folder, 16), 2, seed=4, device=cpu, workers=2)
    for _ in range(7):
        assert torch.equal(next(alone), next(workers))


def test_training_streams_shuffle_each_domain_independently(tmp_path):
    for name in batches.TRAINING_DOMAINS:
        numbered(tmp_path / name, 8)
    streams = batches.training_streams(tmp_path, batches.TRAINING_DOMAINS, 4, 16, seed=0,
                                       device=torch.device("cpu"), flip=False,
                                       positions={"cartoons": 2})
    first = {name: indices(next(stream)) for name, stream in streams.items()}
    assert first["photos"] != first["cartoons_smoothed"]
    cartoons = iter(batches.KeyedBatches(8, 4, seed=1))
    next(cartoons), next(cartoons)
    assert first["cartoons"] == next(cartoons)  # started at global batch 2, seed 0 * 3 + 1


def test_load_images_takes_the_first_readable_in_order(tmp_path):
    for index in range(4):
        write_image(tmp_path / f"{index}.png", picture(index, 40, 40))
    (tmp_path / "0b.png").write_text("oops")
    with pytest.warns(UserWarning, match="0b.png"):
        loaded = batches.load_images(tmp_path, 3, 32)
    assert len(loaded) == 3
    for index, image in enumerate(loaded):
        np.testing.assert_array_equal(image, read_fitted(tmp_path / f"{index}.png", 32))
    with pytest.warns(UserWarning, match="0b.png"):
        assert len(batches.load_images(tmp_path, 10, 32)) == 4
