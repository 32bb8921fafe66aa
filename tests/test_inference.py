"""Inference: the authors' forward at any size, exact tiles through cartoonize (the engine
itself: test_tiling.py), memory faults, precision, colour control, and the cartoonize command
on files and folders."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cglib import authors, images, inference, pretrained
from cglib.__main__ import main

FP32 = inference.Settings(torch.device("cpu"), "fp32", 4096)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like image: smooth colour blobs plus a little noise (uniform noise alone has
    instance-norm statistics that every tile shares, which would hide tiling errors)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    noise = rng.integers(-12, 13, (height, width, 3))
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


@pytest.fixture(scope="module")
def small():
    """A narrow generator in the official layout (width 8), with its official-named state."""
    state = authors.random_state(seed=1, width=8)
    return pretrained.from_official(state).eval(), state


@pytest.fixture(scope="module")
def official():
    state = authors.random_state(seed=2)
    return pretrained.from_official(state).eval(), state


def reference_photo(name: str) -> tuple[np.ndarray, Path]:
    """A reference photo fed as the official test code fed it: long side 450, PIL bicubic."""
    folder = os.environ.get("CGLIB_REFERENCE_DIR")
    if not folder or not (Path(folder) / f"{name}.jpg").is_file():
        pytest.skip("needs the official outputs: set CGLIB_REFERENCE_DIR to the folder holding "
                    f"{name}.jpg and its cartoons")
    image = Image.open(Path(folder) / f"{name}.jpg").convert("RGB")
    width, height = image.size
    size = (450, int(450 * height / width)) if width > height else (int(450 * width / height), 450)
    return np.asarray(image.resize(size, Image.BICUBIC)), Path(folder)


# -- the authors' forward at any size -------------------------------------------------------------


def test_every_size_from_8_to_40_equals_the_independent_forward(small):
    generator, state = small
    worst, threads = 0.0, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: threads cost more than they give
    with torch.inference_mode():
        for height in range(8, 41):
            for width in range(8, 41):
                x = torch.rand(1, 3, height, width) * 2 - 1
                expected = authors.forward(state, x)[..., :height, :width]
                worst = max(worst, (inference.generate(generator, x, FP32) - expected).abs().max())
    torch.set_num_threads(threads)
    assert worst <= 1e-4


@pytest.mark.parametrize("size", [(301, 450), (337, 450), (450, 301)])
def test_released_layout_at_photo_sizes_equals_the_independent_forward(official, size):
    generator, state = official
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        got = inference.generate(generator, x, FP32)
        expected = authors.forward(state, x)[..., :size[0], :size[1]]
    assert got.shape == x.shape and (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("style", ["hayao", "hosoda"])
@pytest.mark.parametrize("name", ["4--24", "7--88"])
def test_reference_photos_match_the_unpadded_forward(style, name, released_weights):
    """cartoonize lands exactly where the authors' unpadded forward lands against their
    published outputs (the remaining gap is the JPEG compression of the references)."""
    weights = released_weights(style)
    image, folder = reference_photo(name)
    reference = images.read_image(folder / f"{name}_{style.capitalize()}.jpg")
    reference = reference[: image.shape[0], : image.shape[1]]
    ours = inference.cartoonize(pretrained.load_official(weights), image, precision="fp32")
    state = torch.load(weights, weights_only=True)
    with torch.inference_mode():
        y = authors.forward(state, images.to_tensor([image]))[..., :image.shape[0],
                                                                  :image.shape[1]]
    unpadded = images.to_images(y)[0]
    print(f"{name} {style}: cartoonize {psnr(ours, reference):.2f} dB, unpadded forward "
          f"{psnr(unpadded, reference):.2f} dB")
    assert abs(psnr(ours, reference) - psnr(unpadded, reference)) <= 0.05
    assert psnr(ours, reference) >= 30


# -- exact tiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,tile", [((200, 280), 64), ((257, 191), 96), ((150, 430), 128),
                                       ((97, 333), 64)])
def test_tiles_equal_the_whole_image(small, size, tile):
    generator, _ = small
    image = photo(*size, seed=tile)
    whole = inference.cartoonize(generator, image, tile=4096, precision="fp32")
    tiled = inference.cartoonize(generator, image, tile=tile, precision="fp32")
    assert np.abs(whole.astype(int) - tiled).max() <= 2


def test_tiles_equal_the_whole_image_with_the_released_layout(official):
    generator, _ = official
    image = photo(180, 244, seed=3)
    whole = inference.cartoonize(generator, image, tile=4096, precision="fp32")
    tiled = inference.cartoonize(generator, image, tile=64, precision="fp32")
    assert np.abs(whole.astype(int) - tiled).max() <= 2
    naive = np.concatenate([inference.cartoonize(generator, image[:, :124], precision="fp32"),
                            inference.cartoonize(generator, image[:, 124:], precision="fp32")],
                           axis=1)
    assert np.abs(whole.astype(int) - naive).max() > 10  # the check has teeth: naive tiles differ


def test_progress_counts_every_pixel_once(small):
    generator, _ = small
    seen = []
    inference.cartoonize(generator, [photo(100, 150), photo(40, 60)], tile=64,
                         precision="fp32", progress=seen.append)
    assert len(seen) > 10 and sum(seen) == pytest.approx(100 * 150 + 40 * 60)


def test_out_of_memory_halves_the_tile_until_it_fits(official, capsys, monkeypatch):
    """A device with little memory, simulated: a convolution whose input holds more values
    than a 64-channel map of 100 x 100 pixels raises the out-of-memory error."""
    generator, _ = official
    image = photo(160, 200)
    expected = inference.cartoonize(generator, image, tile=4096, precision="fp32")
    conv2d = torch.nn.functional.conv2d

    def small_device(x, *args, **kwargs):
        if x.numel() > 64 * 100 * 100:
            raise torch.OutOfMemoryError("simulated: out of memory")
        return conv2d(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", small_device)
    got = inference.cartoonize(generator, image, tile=512, precision="fp32")
    printed = capsys.readouterr().out
    assert printed == ("out of memory on cpu with tiles of 200 pixels; trying again with 100\n")
    assert np.abs(got.astype(int) - expected).max() <= 2

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated: out of memory")

    monkeypatch.setattr(torch.nn.functional, "conv2d", no_memory)
    with pytest.raises(RuntimeError, match="out of memory on cpu even with tiles of"):
        inference.cartoonize(generator, image, precision="fp32")


# -- precision, size and colour ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["4--24", "7--88"])
def test_bf16_stays_40_db_from_fp32_on_the_reference_photos(name, released_weights):
    generator = pretrained.load_official(released_weights("hayao"))
    image, _ = reference_photo(name)
    fp32 = inference.cartoonize(generator, image, precision="fp32")
    for tile in (4096, 128):  # whole and in tiles
        bf16 = inference.cartoonize(generator, image, precision="bf16", tile=tile)
        print(f"{name}: bf16 (tile {tile}) vs fp32: {psnr(bf16, fp32):.1f} dB")
        assert psnr(bf16, fp32) >= 40


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_channels_last_norm_is_the_instance_norm_and_keeps_the_layout(dtype):
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = (torch.randn(3, 5, 12, 10) * 2 + 3).to(dtype).contiguous(memory_format=torch.channels_last)
    y = inference.ChannelsLastNorm.like(norm)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = torch.nn.functional.instance_norm(x.double(), weight=norm.weight.double(),
                                                 bias=norm.bias.double(), eps=norm.eps)
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    assert (y.double() - expected.double()).abs().max() <= tolerance
    one = inference.ChannelsLastNorm.like(norm)(x[1:2])
    assert torch.equal(one, y[1:2])


def test_the_bf16_copy_is_channels_last_with_its_own_norms(small):
    generator, _ = small
    settings = inference.Settings.resolve(generator, "cpu", "bf16", "auto")
    with inference.evaluating(generator, settings) as copied:
        norms = [m for m in copied.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        assert norms and all(type(m) is inference.ChannelsLastNorm for m in norms)
        assert not any(m.training for m in copied.modules())
        assert all(p.is_contiguous(memory_format=torch.channels_last)
                   for p in copied.parameters() if p.dim() == 4)
    assert not any(type(m) is inference.ChannelsLastNorm for m in generator.modules())


def test_max_side_downsizes_first(small):
    generator, _ = small
    image = photo(300, 200)
    cartoon = inference.cartoonize(generator, image, max_side=150, precision="fp32")
    assert cartoon.shape == (150, 100, 3)
    assert inference.cartoonize(generator, image, max_side=999, precision="fp32").shape == (
        300, 200, 3)
    with pytest.raises(ValueError, match="max_side=4"):
        inference.cartoonize(generator, image, max_side=4)


def test_strength_blends_with_the_photo_and_keep_colors_keeps_its_chroma():
    import cv2

    image, cartoon = photo(40, 60, seed=1), photo(40, 60, seed=2)
    assert np.array_equal(inference.adjust_colors(image, cartoon, strength=0.0), image)
    assert np.array_equal(inference.adjust_colors(image, cartoon, strength=1.0), cartoon)
    half = inference.adjust_colors(image, cartoon, strength=0.5)
    assert np.abs(half.astype(int) - (image.astype(int) + cartoon) / 2).max() <= 1
    kept = inference.adjust_colors(image, cartoon, keep_colors=True)
    kept_ycc, image_ycc, cartoon_ycc = (cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)
                                        for x in (kept, image, cartoon))
    # chroma from the photo and luma from the cartoon, up to the rounding of two conversions
    # (and where the RGB cube clips them)
    assert np.median(np.abs(kept_ycc[..., 1:].astype(int) - image_ycc[..., 1:])) <= 1
    assert np.median(np.abs(kept_ycc[..., 0].astype(int) - cartoon_ycc[..., 0])) <= 1
    with pytest.raises(ValueError, match="strength=1.5"):
        inference.adjust_colors(image, cartoon, strength=1.5)


# -- inputs ---------------------------------------------------------------------------------------


def test_list_in_list_out_and_batches_equal_single_images(small):
    generator, _ = small
    batch = [photo(24, 32, 1), photo(40, 20, 2), photo(24, 32, 3)]
    cartoons = inference.cartoonize(generator, batch, batch_size=2, precision="fp32")
    assert [c.shape for c in cartoons] == [b.shape for b in batch]
    alone = inference.cartoonize(generator, batch[2], precision="fp32")
    assert np.abs(cartoons[2].astype(int) - alone).max() <= 1


def test_mode_is_kept_and_bad_inputs_are_named(small):
    generator, _ = small
    generator.train()
    inference.cartoonize(generator, photo(16, 16), precision="fp32")
    assert generator.training
    generator.eval()
    with pytest.raises(ValueError, match="image 1 is a float32 array"):
        inference.cartoonize(generator, [photo(8, 8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="image 0 is 1x1 pixels; cartoonize needs at least 8x8"):
        inference.cartoonize(generator, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="tile=30: give a side in pixels of at least 64"):
        inference.cartoonize(generator, photo(8, 8), tile=30)


def test_too_small_is_an_image_error_with_a_reason_for_reports():
    with pytest.raises(images.ImageError) as error:
        inference.check_image(np.zeros((5, 9, 3), np.uint8), index=2)
    assert isinstance(error.value, inference.TooSmallError) and isinstance(error.value,
                                                                           ValueError)
    assert error.value.reason == "too small: 9x5 pixels, cartoonize needs at least 8x8"
    assert str(error.value) == "image 2 is 9x5 pixels; cartoonize needs at least 8x8"


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def official_file(tmp_path):
    """A narrow generator saved the way training saves them (the command takes either kind)."""
    generator = pretrained.from_official(authors.random_state(seed=1, width=8))
    return pretrained.save_generator(generator, tmp_path / "narrow.pt")


def run(args, capsys):
    code = main(["cartoonize", *map(str, args), "--device", "cpu", "--precision", "fp32"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_command_cartoonizes_folders_keeps_going_and_reports(official_file, tmp_path, capsys):
    folder = tmp_path / "photos"
    images.write_image(folder / "trip" / "beach.png", photo(30, 44))
    (folder / "broken.jpg").write_text("not a picture")
    images.write_image(folder / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    code, printed, _ = run([folder, tmp_path / "absent.jpg", "--style", official_file,
                            "--out", out], capsys)
    assert code == 1  # absent.jpg was named; the bad files inside the folder alone give 0
    assert f"named but not done: {tmp_path / 'absent.jpg'}" in printed
    assert images.read_image(out / "trip" / "beach_narrow.png").shape == (30, 44, 3)
    assert "wrote 1, 0 already up to date, 4 rejected" in printed
    assert "broken.jpg: not an image" in printed and "absent.jpg: does not exist" in printed
    assert "tiny.png: too small: 1x1 pixels" in printed and "empty.png: empty file" in printed
    assert sorted(p.name for p in out.rglob("*")) == ["beach_narrow.png", "trip"]


def test_same_names_stay_apart_and_a_second_run_keeps_what_is_there(official_file, tmp_path,
                                                                    capsys):
    images.write_image(tmp_path / "a" / "x.png", photo(20, 24, 1))
    images.write_image(tmp_path / "a" / "x.jpg", photo(20, 24, 2))
    out = tmp_path / "out"
    args = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg", "--style", official_file,
            "--out", out]
    assert run(args, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-jpg_narrow.png", "x-png_narrow.png"]
    written = (out / "x-jpg_narrow.png").stat().st_mtime_ns
    code, printed, _ = run(args, capsys)
    assert code == 0 and "wrote 0, 2 already up to date" in printed
    assert (out / "x-jpg_narrow.png").stat().st_mtime_ns == written
    assert "wrote 2" in run([*args, "--overwrite"], capsys)[1]


def test_a_named_file_not_done_fails_though_others_were_written(official_file, tmp_path,
                                                                  capsys):
    images.write_image(tmp_path / "a.png", photo(20, 24, 1))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    images.write_image(tmp_path / "folder" / "b.png", photo(20, 24, 2))
    (tmp_path / "folder" / "c.png").write_bytes(b"")
    out = tmp_path / "out"
    code, printed, _ = run([tmp_path / "a.png", tmp_path / "typo.png", tmp_path / "corrupt.png",
                            "--style", official_file, "--out", out], capsys)
    assert code == 1 and "wrote 1, 0 already up to date, 2 rejected" in printed
    assert printed.splitlines()[-1] == (f"named but not done: {tmp_path / 'typo.png'}, "
                                        f"{tmp_path / 'corrupt.png'}")
    code, printed, _ = run([tmp_path / "a.png", tmp_path / "folder", "--style", official_file,
                            "--out", out], capsys)
    assert code == 0 and "wrote 1, 1 already up to date, 1 rejected" in printed
    assert "named but not done" not in printed


def test_nothing_written_is_a_failure(official_file, tmp_path, capsys):
    code, printed, _ = run([tmp_path / "absent.jpg", "--style", official_file, "--out",
                            tmp_path / "out"], capsys)
    assert code == 1 and "wrote 0, 0 already up to date, 1 rejected" in printed


def test_out_that_is_a_file_is_one_line_before_any_work(official_file, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    images.write_image(tmp_path / "p.png", photo(20, 20))
    code, _, error = run([tmp_path / "p.png", "--style", official_file, "--out",
                          tmp_path / "taken"], capsys)
    assert code == 2 and error.startswith("error: ") and error.count("\n") == 1
    assert "taken is a file" in error


def test_full_disk_is_one_line_and_keeps_what_was_written(official_file, tmp_path, capsys,
                                                          disk_full_at):
    for index in range(3):
        images.write_image(tmp_path / "in" / f"{index}.png", photo(20, 20, index))
    disk_full_at(2)
    code, printed, error = run([tmp_path / "in", "--style", official_file, "--out",
                                tmp_path / "out"], capsys)
    lines = error.replace("\r", "\n").splitlines()  # the progress bar draws on stderr too
    assert code == 2 and "Traceback" not in error
    assert [line for line in lines if line.startswith("error")] == [
        f"error: no space left on the device; free some space (or choose another folder) and "
        f"run again: finished outputs are kept ({tmp_path / 'out' / '1_narrow.png'})"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0_narrow.png"]
    assert printed == (f"stopped before the end; done so far:\n{tmp_path / 'out'}: wrote 1, 0 "
                       "already up to date, 0 rejected\n")
