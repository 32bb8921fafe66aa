"""The content network: layer table, normalization, frozen state, offline weight resolution.

Nothing here downloads: weights are "random" or small state-dict files written by the tests.
"""

import urllib.error
import warnings

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import vgg as torchvision_vgg

from cglib import vgg as vgg_module
from cglib.vgg import (
    CONV_LAYERS,
    VGG19_URL,
    WEIGHTS_ENV,
    VGG19Features,
    VGGWeightsNotFound,
    find_vgg19_weights,
    resolve_vgg_weights,
)


def random_vgg(**kwargs) -> VGG19Features:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VGG19Features(weights="random", **kwargs)


@pytest.fixture(scope="module")
def features() -> VGG19Features:
    return random_vgg()


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path):
    """No environment variable and an empty hub cache."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(vgg_module, "hub_cache_file", lambda: tmp_path / "vgg19-dcbb9e9d.pth")


def normalized(images: torch.Tensor) -> torch.Tensor:
    """torchvision's own input pipeline: [-1, 1] -> [0, 1] -> ImageNet mean/std."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def test_layer_table_matches_torchvision():
    assert CONV_LAYERS["conv1_1"] == 0 and CONV_LAYERS["conv4_4"] == 25
    assert CONV_LAYERS["conv5_4"] == 34 and len(CONV_LAYERS) == 16
    layers = torchvision_vgg.make_layers(torchvision_vgg.cfgs["E"])
    for index in CONV_LAYERS.values():
        assert isinstance(layers[index], nn.Conv2d) and isinstance(layers[index + 1], nn.ReLU)
    assert layers[25].in_channels == layers[25].out_channels == 512


def test_random_weights_warn_and_are_seeded():
    with pytest.warns(UserWarning, match="not the paper's"):
        first = VGG19Features(weights="random", layer="conv2_1")
    torch.manual_seed(123)  # the global generator must not matter
    second = random_vgg(layer="conv2_1")
    other = random_vgg(layer="conv2_1", seed=1)
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(first(images), second(images))
    assert not torch.allclose(first(images), other(images))


def test_conv4_4_shape_and_before_relu(features):
    images = torch.rand(2, 3, 32, 48) * 2 - 1
    before = features(images)
    assert before.shape == (2, 512, 4, 6) and before.dtype == torch.float32
    assert (before < 0).any()  # taken before the ReLU
    after = random_vgg(before_relu=False)(images)
    assert torch.allclose(after, before.clamp(min=0))
    assert len(features.features) == 26 and isinstance(features.features[-1], nn.Conv2d)


def test_applies_imagenet_normalization_itself(features):
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    expected = features.features(normalized(images))
    assert torch.allclose(features(images), expected, atol=1e-5)


def test_frozen_and_always_in_eval_mode(features):
    assert all(not p.requires_grad for p in features.parameters())
    holder = nn.Sequential(nn.Conv2d(3, 3, 1), features)
    holder.train()
    assert holder[0].training and not features.training
    assert not any(m.training for m in features.modules())
    images = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
    features(images).abs().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_resize_option(features):
    resizing = random_vgg(input_size=224)
    assert resizing(torch.zeros(1, 3, 64, 96)).shape == (1, 512, 28, 28)


def test_channels_last_and_autocast(features):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    reference = features(images)
    last = random_vgg().to(memory_format=torch.channels_last)
    out = last(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = features(images)
    assert low.dtype == torch.bfloat16
    scale = reference.abs().mean()
    assert (low.float() - reference).abs().mean() < 0.05 * scale


def write_state(path, layer_count: int, prefix: str) -> dict[str, torch.Tensor]:
    """A random torchvision VGG19 ``features`` state dict, cut to ``layer_count`` layers."""
    torch.manual_seed(7)
    layers = torchvision_vgg.make_layers(torchvision_vgg.cfgs["E"])[:layer_count]
    state = {f"{prefix}{key}": value for key, value in layers.state_dict().items()}
    torch.save(state, path)
    return layers.state_dict()


def test_imagenet_weights_from_the_environment_variable(monkeypatch, tmp_path):
    file = tmp_path / "vgg19-features.pth"
    state = write_state(file, 26, prefix="features.")  # keys as in the full vgg19 file
    monkeypatch.setenv(WEIGHTS_ENV, str(file))
    assert find_vgg19_weights() == file
    assert resolve_vgg_weights("auto", download=False) == "imagenet"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "imagenet" must not warn
        loaded = VGG19Features(weights="imagenet", download=False)
    assert torch.equal(loaded.features[25].weight, state["25.weight"])
    reference = torchvision_vgg.make_layers(torchvision_vgg.cfgs["E"])[:26]
    reference.load_state_dict(state)
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(loaded(images), reference(normalized(images)), atol=1e-5)


def test_features_only_file_without_prefix(monkeypatch, tmp_path):
    file = tmp_path / "small.pth"
    state = write_state(file, 3, prefix="")
    monkeypatch.setenv(WEIGHTS_ENV, str(file))
    loaded = VGG19Features(weights="imagenet", layer="conv1_2", download=False)
    assert torch.equal(loaded.features[2].weight, state["2.weight"])


def test_hub_cache_is_the_second_place(no_local_weights, tmp_path):
    assert find_vgg19_weights() is None
    write_state(vgg_module.hub_cache_file(), 3, prefix="features.")
    assert find_vgg19_weights() == tmp_path / "vgg19-dcbb9e9d.pth"
    assert VGG19Features(weights="imagenet", layer="conv1_2", download=False).weights == "imagenet"


def test_hub_cache_file_is_torchvisions_name():
    assert vgg_module.hub_cache_file().name == VGG19_URL.rsplit("/", 1)[-1]
    assert VGG19_URL == torchvision.models.VGG19_Weights.IMAGENET1K_V1.url


def test_missing_weights_give_a_clear_error(no_local_weights, tmp_path):
    with pytest.raises(VGGWeightsNotFound) as caught:
        VGG19Features(weights="imagenet", download=False)
    message = str(caught.value)
    assert VGG19_URL in message and WEIGHTS_ENV in message
    assert str(tmp_path / "vgg19-dcbb9e9d.pth") in message
    with pytest.raises(VGGWeightsNotFound):
        resolve_vgg_weights("auto", download=False)
    with pytest.warns(UserWarning, match="random"):
        assert resolve_vgg_weights("auto", download=False, fallback="random") == "random"
    assert resolve_vgg_weights("random") == "random"


def test_env_variable_naming_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(VGGWeightsNotFound, match=WEIGHTS_ENV):
        resolve_vgg_weights("imagenet", download=False)


def test_failed_download_says_where_to_put_the_file(no_local_weights, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.VGG19_Weights.IMAGENET1K_V1.__class__,
                        "get_state_dict", offline)
    with pytest.raises(VGGWeightsNotFound, match="download failed.*Name or service"):
        resolve_vgg_weights("imagenet", download=True)


def test_foreign_file_is_rejected(monkeypatch, tmp_path):
    file = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, file)
    monkeypatch.setenv(WEIGHTS_ENV, str(file))
    with pytest.raises(ValueError, match="not a VGG19 state dict"):
        VGG19Features(weights="imagenet", layer="conv1_2", download=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv4_4"):
        VGG19Features(weights="random", layer="relu4_4")
    with pytest.raises(ValueError, match="'imagenet' or"):
        VGG19Features(weights="caffe")
    with pytest.raises(ValueError, match="not a choice"):
        resolve_vgg_weights("caffe")
    with pytest.raises(ValueError, match="fallback"):
        resolve_vgg_weights("auto", fallback="imagenet")
