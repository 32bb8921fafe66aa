"""cglib.images: robust reading of every kind of image file, atomic writes, listing, sizing."""

import os
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from cglib.images import (
    ImageError,
    ImageJob,
    fit_to_size,
    is_video,
    list_images,
    list_media,
    min_short_side,
    read_fitted,
    read_image,
    run_image_job,
    write_image,
)


def smooth_image(height=40, width=60, seed=0):
    """Smooth random colours: survive JPEG compression almost unchanged."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def encoded(image, suffix):
    return cv2.imencode(suffix, image[:, :, ::-1])[1].tobytes()


def test_png_round_trip_is_exact_and_rgb(tmp_path):
    image = smooth_image()
    image[0, 0] = (255, 0, 0)  # red, to catch a BGR mix-up
    path = write_image(tmp_path / "a" / "b.png", image)
    read = read_image(path)
    assert read.dtype == np.uint8 and read.shape == (40, 60, 3)
    np.testing.assert_array_equal(read, image)
    assert tuple(read[0, 0]) == (255, 0, 0)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = write_image(tmp_path / "x.png", smooth_image())
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not a private temporary file's
    before = path.read_bytes()
    monkeypatch.setattr("os.replace", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_image(path, smooth_image(seed=1))
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_write_rejects_bad_arrays_and_suffixes(tmp_path):
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "a.gif", np.zeros((4, 4, 3), np.uint8))


def test_grayscale_palette_and_16_bit_become_8_bit_rgb(tmp_path):
    image = smooth_image()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.dstack([gray] * 3))

    Image.fromarray(image).quantize(16).save(tmp_path / "palette.png")
    palette = Image.open(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"),
                                  np.asarray(palette.convert("RGB")))

    wide = gray.astype(np.uint16) * 257 + 100  # 16-bit levels between two 8-bit ones
    cv2.imwrite(str(tmp_path / "gray16.png"), wide)
    expected = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "gray16.png"), np.dstack([expected] * 3))

    cv2.imwrite(str(tmp_path / "rgb16.png"), image[:, :, ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), image)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[0, :, 3] = (0, 255, 128)
    rgba[1, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    read = read_image(tmp_path / "rgba.png")
    assert tuple(read[0, 0]) == (255, 255, 255)  # fully transparent: white
    assert tuple(read[0, 1]) == (200, 100, 0)  # opaque: the colour
    alpha = 128 / 255
    assert tuple(read[0, 2]) == tuple(round(c * alpha + 255 * (1 - alpha)) for c in (200, 100, 0))


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    image = smooth_image()
    Image.fromarray(image).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    read = read_image(tmp_path / "cmyk.jpg")
    assert read.shape == image.shape
    assert np.abs(read.astype(int) - image).mean() < 4


def test_exif_orientation_is_applied(tmp_path):
    image = smooth_image(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(image).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    read = read_image(tmp_path / "phone.jpg")
    assert read.shape == (50, 30, 3)
    assert np.abs(read.astype(int) - np.rot90(image, -1)).mean() < 3
    assert np.abs(read.astype(int) - np.rot90(image, 1)).mean() > 20


def test_bad_files_raise_image_error_naming_file_and_reason(tmp_path):
    big = cv2.resize(smooth_image(), (400, 300))
    jpeg = encoded(big, ".jpg")
    (tmp_path / "truncated.jpg").write_bytes(jpeg[:len(jpeg) * 6 // 10])
    png = encoded(big, ".png")
    (tmp_path / "corrupt.png").write_bytes(png[:40] + bytes(range(256)) * 8)
    (tmp_path / "notes.jpg").write_text("hello, this is not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    expected = {
        "truncated.jpg": "truncated (decoded about",
        "corrupt.png": "corrupt",
        "notes.jpg": "not an image (it holds text: 'hello, this is not a picture')",
        "empty.png": "empty file",
        "random.png": "not an image (unknown format)",
        "missing.png": "no such file",
    }
    for name, reason in expected.items():
        with pytest.raises(ImageError) as caught:
            read_image(tmp_path / name)
        assert isinstance(caught.value, ValueError)
        assert caught.value.path == tmp_path / name
        assert caught.value.reason.startswith(reason), caught.value.reason
        assert name in str(caught.value)


def test_truncated_message_says_how_far_it_decoded(tmp_path):
    png = encoded(cv2.resize(smooth_image(), (400, 300)), ".png")
    (tmp_path / "half.png").write_bytes(png[:len(png) // 2])
    with pytest.raises(ImageError, match=r"truncated \(decoded about (4\d|5\d)% of its rows\)"):
        read_image(tmp_path / "half.png")


def test_list_images_sorted_recursive_without_hidden_or_other_files(tmp_path):
    for name in ["b.png", "A.JPG", "sub/c.webp", "sub/deep/d.bmp", ".hidden.png",
                 ".cache/e.png", "notes.txt", "f.jpeg"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["A.JPG", "b.png", "f.jpeg", "sub/c.webp", "sub/deep/d.bmp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["A.JPG", "b.png",
                                                                       "f.jpeg"]


def test_list_images_missing_or_empty_folder_says_which_and_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*put images"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match=r"empty or its subfolders holds no images"):
        list_images(tmp_path / "empty")


def test_list_media_takes_images_and_videos_and_is_video_tells_them_apart(tmp_path):
    for name in ["b.png", "clip.MP4", "sub/film.mkv", ".hidden.mov", "notes.txt", "a.gif"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = list_media(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.png", "clip.MP4",
                                                                  "sub/film.mkv"]
    assert [is_video(path) for path in found] == [False, True, True]
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("none")
    with pytest.raises(FileNotFoundError, match=r"holds no images or videos; put images or "
                                                r"videos \(bmp, jpeg, jpg, png, webp, avi"):
        list_media(tmp_path / "text")


def test_fit_to_size_resizes_the_short_side_and_crops_the_centre():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # a white middle third
    fitted = fit_to_size(image, 50)
    assert fitted.shape == (50, 50, 3)
    assert fitted.min() == 255  # the centre crop is all white
    up = fit_to_size(smooth_image(30, 40), 60)
    assert up.shape == (60, 60, 3)
    same = smooth_image(20, 20)
    assert fit_to_size(same, 20) is same


def test_size_rule_upscales_to_twice_at_most(tmp_path):
    assert min_short_side(256) == 128 and min_short_side(25) == 13
    write_image(tmp_path / "tiny.png", smooth_image(10, 10))
    with pytest.raises(ImageError, match="too small: 10x10, need at least 128 on the short side"):
        read_fitted(tmp_path / "tiny.png", 256)
    write_image(tmp_path / "half.png", smooth_image(128, 300))
    assert read_fitted(tmp_path / "half.png", 256).shape == (256, 256, 3)


def test_run_image_job_writes_or_returns_the_reason(tmp_path):
    write_image(tmp_path / "ok.png", smooth_image())
    (tmp_path / "bad.png").write_text("text")
    job = ImageJob(tmp_path / "ok.png", tmp_path / "out" / "ok.png", 32, np.flipud)
    assert run_image_job(job) is None
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "ok.png"),
                                  np.flipud(read_fitted(tmp_path / "ok.png", 32)))
    reason = run_image_job(ImageJob(tmp_path / "bad.png", tmp_path / "out" / "bad.png", 32))
    assert reason.startswith("not an image")
    assert not (tmp_path / "out" / "bad.png").exists()


# -- photos of any size ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    """A 10000 x 9000 JPEG (90 megapixels, over Pillow's limit of about 89.5): one flat grey,
    so that it is made in a fraction of a second and takes 1 MB."""
    path = tmp_path_factory.mktemp("large") / "medium-format.jpg"
    Image.new("L", (10000, 9000), 128).save(path, quality=50)
    return path


def test_a_photo_over_pillows_pixel_limit_reads_and_decodes_smaller_when_downsized(
        large_jpeg):
    from cglib.images import image_size

    assert image_size(large_jpeg) == (10000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        small = read_image(large_jpeg, max_side=1000)  # decoded at 1/8: 1250 x 1125
    assert small.shape == (1125, 1250, 3) and np.all(np.abs(small.astype(int) - 128) <= 1)
    assert read_fitted(large_jpeg, 64).shape == (64, 64, 3)


def test_cartoonize_and_import_take_a_photo_over_the_pixel_limit(large_jpeg, tmp_path, capsys):
    from cglib import authors, data, pretrained
    from cglib.__main__ import main

    generator = pretrained.from_official(authors.random_state(seed=1, width=8))
    style = pretrained.save_generator(generator, tmp_path / "narrow.pt")
    assert main(["cartoonize", str(large_jpeg), "--style", str(style), "--out",
                 str(tmp_path / "out"), "--max-side", "256", "--device", "cpu",
                 "--precision", "fp32"]) == 0
    assert read_image(tmp_path / "out" / "medium-format_narrow.png").shape == (230, 256, 3)
    report = data.import_images(large_jpeg, tmp_path / "set", "photos", size=32, workers=1)
    assert (len(report.written), report.rejected) == (1, {})


def header_only_png(width, height):
    """A PNG whose header claims ``width`` x ``height`` pixels, with no pixels at all."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_header_claiming_more_pixels_than_memory_holds_is_refused_before_decoding(
        tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(header_only_png(1_000_000, 1_000_000))
    with pytest.raises(ImageError, match=r"bomb\.png: too large to decode: 1000000x1000000 "
                                         r"pixels need 2794\.0 GiB, more than 50% of the "
                                         r"[\d.]+ GiB of memory available"):
        read_image(bomb)
