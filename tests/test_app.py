"""The upload app's pieces, without a browser: uploads in both ipywidgets formats, the
callback, and the widget wiring."""

import datetime

import cv2
import numpy as np
import pytest

from cglib import app, images, models


def png_bytes(image):
    return cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()


@pytest.fixture(scope="module")
def generator():
    return models.Generator(width=8, residual_blocks=1).eval()


def photo(height=40, width=56):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_uploads_in_ipywidgets_7_and_8_formats():
    content = png_bytes(photo())
    version8 = ({"name": "a.png", "type": "image/png", "size": len(content),
                 "content": memoryview(content), "last_modified": 0},)
    version7 = {"a.png": {"metadata": {"name": "a.png"}, "content": content}}
    assert app.uploaded_files(version8) == app.uploaded_files(version7) == [("a.png", content)]
    assert app.uploaded_files(()) == []


def test_callback_cartoonizes_an_upload_and_names_a_bad_one(generator):
    image = photo()
    shown, cartoon = app.cartoonize_upload("me.png", png_bytes(image), generator,
                                           strength=0.0)
    assert np.array_equal(shown, image) and np.array_equal(cartoon, image)  # strength 0
    _, cartoon = app.cartoonize_upload("me.png", png_bytes(image), generator, max_side=28)
    assert cartoon.shape == (20, 28, 3)
    with pytest.raises(images.ImageError, match=r"notes.jpg: not an image"):
        app.cartoonize_upload("notes.jpg", b"hello, not a picture", generator)
    with pytest.raises(images.ImageError, match="tiny.png: .*5x5 pixels"):  # the app shows it
        app.cartoonize_upload("tiny.png", png_bytes(photo(5, 5)), generator)


def uploaded(name, content):
    """A file as ipywidgets 8's FileUpload holds it after the browser sent it."""
    return ({"name": name, "type": "image/png", "size": len(content),
             "content": memoryview(content), "last_modified": datetime.datetime.now()},)


def test_the_app_shows_the_cartoon_and_saves_it(generator, tmp_path):
    widget = app.cartoonize_app({"tiny": generator}, tmp_path)
    upload, _, save = widget.children[0].children
    output = widget.children[2]
    upload.value = uploaded("me.png", png_bytes(photo()))
    assert not save.disabled and len(output.outputs) == 1
    save.click()
    assert images.read_image(tmp_path / "me_tiny.png").shape == (40, 56, 3)
    first = (tmp_path / "me_tiny.png").read_bytes()
    upload.value = uploaded("me.png", png_bytes(photo(24, 32)))  # another photo, same name
    save.click()
    assert (tmp_path / "me_tiny.png").read_bytes() == first  # kept, not replaced
    assert images.read_image(tmp_path / "me_tiny-2.png").shape == (24, 32, 3)
    upload.value = uploaded("bad.png", b"bad")
    assert save.disabled and "bad.png" in output.outputs[0]["text"]
