"""The objective: adversarial terms against hand-computed numbers, the log loss against the
paper's formula, the content loss, gradients, the image pool and the edge discriminator."""

import io
import math
import warnings

import pytest
import torch
from torch import nn

from cglib.losses import (
    ContentLoss,
    ImagePool,
    adversarial_loss,
    discriminator_loss,
    fit_edge_discriminator,
    generator_adversarial_loss,
)
from cglib.vgg import VGG19Features


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VGG19Features(weights="random")


def close(value: torch.Tensor, expected: float) -> bool:
    return math.isclose(value.item(), expected, rel_tol=1e-5, abs_tol=1e-6)


SCORES = torch.tensor([[0.5, -1.0], [2.0, 0.0]])


def test_least_squares_terms_by_hand():
    # real: ((0.5-1)^2 + (-1-1)^2 + (2-1)^2 + (0-1)^2) / 4 = (0.25 + 4 + 1 + 1) / 4
    assert close(adversarial_loss(SCORES, True, "lsgan"), 1.5625)
    # fake: (0.25 + 1 + 4 + 0) / 4
    assert close(adversarial_loss(SCORES, False, "lsgan"), 1.3125)


def test_log_terms_by_hand():
    logits = torch.tensor([0.0, math.log(3.0)])  # D = sigmoid = 1/2 and 3/4
    # real: -(log 1/2 + log 3/4) / 2 = (0.693147 + 0.287682) / 2
    assert close(adversarial_loss(logits, True, "log"), 0.4904146)
    # fake: -(log 1/2 + log 1/4) / 2 = (0.693147 + 1.386294) / 2
    assert close(adversarial_loss(logits, False, "log"), 1.0397208)


def test_discriminator_loss_is_the_mean_of_three_terms():
    d_cartoon = torch.tensor([1.0, 0.0])  # (0 + 1) / 2 = 0.5
    d_smoothed = torch.tensor([0.5, 0.5])  # (0.25 + 0.25) / 2 = 0.25
    d_generated = torch.tensor([2.0, 0.0])  # (4 + 0) / 2 = 2
    loss, parts = discriminator_loss(d_cartoon, d_smoothed, d_generated)
    assert close(loss, (0.5 + 0.25 + 2.0) / 3)
    assert close(parts["cartoon"], 0.5) and close(parts["smoothed"], 0.25)
    assert close(parts["generated"], 2.0)
    assert not any(p.requires_grad for p in parts.values())
    no_edge, parts = discriminator_loss(d_cartoon, None, d_generated, edge_term=False)
    assert close(no_edge, (0.5 + 2.0) / 2) and set(parts) == {"cartoon", "generated"}
    with pytest.raises(ValueError, match="edge_term"):
        discriminator_loss(d_cartoon, None, d_generated)


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="'hinge'.*'lsgan' or 'log'"):
        adversarial_loss(SCORES, True, "hinge")


def test_generator_term_by_hand():
    assert close(generator_adversarial_loss(torch.tensor([0.5, 1.5])), 0.25)
    assert close(generator_adversarial_loss(torch.tensor([0.0]), "log"), math.log(2.0))


def test_log_loss_equals_the_papers_formula():
    rng = torch.Generator().manual_seed(0)
    c, e, g = (torch.randn(4, 1, 8, 8, generator=rng) * 3 for _ in range(3))
    loss, _ = discriminator_loss(c, e, g, kind="log")
    d = torch.sigmoid
    paper = (torch.log(d(c)).mean() + torch.log(1 - d(e)).mean() + torch.log(1 - d(g)).mean())
    assert torch.allclose(loss, -paper / 3, atol=1e-5)
    assert torch.allclose(generator_adversarial_loss(g, "log"), -torch.log(d(g)).mean(),
                          atol=1e-5)


def test_log_loss_stays_finite_for_extreme_logits():
    logits = torch.tensor([100.0, -100.0], requires_grad=True)
    real = adversarial_loss(logits, True, "log")  # -log sigmoid: 0 and 100
    assert close(real, 50.0)
    loss, _ = discriminator_loss(logits, logits, logits, kind="log")
    assert torch.isfinite(loss) and close(loss, (50.0 + 50.0 + 50.0) / 3)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_losses_are_float32_under_autocast(vgg):
    scores = torch.randn(2, 1, 4, 4).bfloat16()
    assert adversarial_loss(scores, True).dtype == torch.float32
    assert discriminator_loss(scores, scores, scores, kind="log")[0].dtype == torch.float32
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weighted, value = ContentLoss(vgg)(images, images.flip(-1))
    assert weighted.dtype == value.dtype == torch.float32


def test_content_loss_by_hand():
    photos = torch.zeros(1, 3, 2, 2)
    generated = photos.clone()
    generated[0, 0, 0, 0] = 1.2  # one of 12 features differs by 1.2
    weighted, value = ContentLoss(nn.Identity())(photos, generated)
    assert close(value, 0.1) and close(weighted, 1.0)  # 1.2 / 12, times w = 10
    weighted, value = ContentLoss(nn.Identity(), kind="l2", weight=1.0)(photos, generated)
    assert close(value, 1.44 / 12) and close(weighted, 0.12)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        ContentLoss(nn.Identity(), kind="l3")


def smooth_image(size: int = 64) -> torch.Tensor:
    """(1, 3, size, size) in [-1, 1]: low-frequency random patterns, so shifts change it
    gradually."""
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(-1, 1)


def test_content_loss_zero_for_identical_and_grows_with_shift(vgg):
    content = ContentLoss(vgg)
    image = smooth_image()
    assert content(image, image)[1].item() == 0.0
    distances = [content(image, torch.roll(image, shift, dims=-1))[1].item()
                 for shift in (1, 3, 9)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_gradients_reach_the_generator_and_never_change_vgg(vgg):
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())
    discriminator = nn.Conv2d(3, 1, 4, stride=4)
    content = ContentLoss(vgg)
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    optimizer = torch.optim.Adam(
        [*generator.parameters(), *vgg.parameters(), *discriminator.parameters()], lr=1e-2
    )
    photos = smooth_image(32)
    generated = generator(photos)
    weighted, _ = content(photos, generated)
    loss = generator_adversarial_loss(discriminator(generated)) + weighted
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert all(p.grad is None for p in vgg.parameters())
    old = [p.clone() for p in generator.parameters()]
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(old, generator.parameters(), strict=True))
    for key, value in vgg.state_dict().items():
        assert torch.equal(value, before[key]), key


def labelled(values) -> torch.Tensor:
    """A batch of (3, 2, 2) images, image i filled with values[i]."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)


def labels(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0]]


def test_pool_disabled_and_filling():
    images = labelled([1, 2, 3])
    assert torch.equal(ImagePool(0).query(images), images)
    pool = ImagePool(4, rng=torch.Generator().manual_seed(0))
    assert labels(pool.query(images)) == [1, 2, 3] and pool.count == 3
    out = pool.query(labelled([4]))
    assert labels(out) == [4] and pool.count == 4


def test_pool_swaps_half_the_time_for_a_stored_image():
    pool = ImagePool(10, rng=torch.Generator().manual_seed(1))
    pool.query(labelled(range(10)))
    given, from_pool = set(range(10)), 0
    trials = 2000
    for value in range(100, 100 + trials):
        given.add(value)
        (out,) = labels(pool.query(labelled([value])))
        assert out in given  # only images it was given
        if out != value:
            from_pool += 1
            assert out not in labels(torch.stack(pool.images))  # swapped out ...
            assert value in labels(torch.stack(pool.images))  # ... for the new one
        assert pool.count == 10
    assert abs(from_pool / trials - 0.5) < 0.05  # 0.5 +- 4.5 standard deviations


def test_pool_is_seeded_and_resumes_from_its_state_dict():
    def run(pool, start):
        return [labels(pool.query(labelled([v, v + 1000]))) for v in range(start, start + 30)]

    first = ImagePool(5, rng=torch.Generator().manual_seed(2))
    second = ImagePool(5, rng=torch.Generator().manual_seed(2))
    assert run(first, 0) == run(second, 0)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["count"] == 5 and state["images"].shape == (5, 3, 2, 2)
    resumed = ImagePool(5, rng=torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert run(resumed, 50) == run(first, 50)
    with pytest.raises(ValueError, match="ImagePool\\(size=5\\)"):
        ImagePool(6).load_state_dict(state)
    empty = ImagePool(3)
    empty.load_state_dict(ImagePool(3).state_dict())
    assert empty.count == 0


def test_edge_discriminator_learns_sharp_from_smoothed():
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(0)
    steps = (torch.rand(16, 1, 1, 1, generator=rng) * 12 + 2).long()
    columns = torch.arange(16).view(1, 1, 1, 16)
    cartoons = torch.where(columns < steps, -1.0, 1.0).expand(-1, 3, 16, -1).contiguous()
    smoothed = nn.functional.avg_pool2d(cartoons, 5, stride=1, padding=2,
                                        count_include_pad=False)
    discriminator = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.LeakyReLU(0.2),
                           nn.Conv2d(16, 1, 3, padding=1))
    history = fit_edge_discriminator(discriminator, cartoons, smoothed, steps=60, batch_size=8,
                                     lr=1e-2, rng=rng)
    assert len(history) == 60 and sum(history[-10:]) < sum(history[:10])
    with torch.no_grad():
        assert discriminator(cartoons).mean() > discriminator(smoothed).mean()


def test_edge_discriminator_on_random_crops():
    torch.manual_seed(0)
    cartoons = torch.where(torch.arange(32).view(1, 1, 1, 32) % 8 < 4, -1.0, 1.0)
    cartoons = cartoons.expand(4, 3, 32, -1).contiguous()  # stripes: an edge every 4 pixels
    smoothed = nn.functional.avg_pool2d(cartoons, 3, stride=1, padding=1,
                                        count_include_pad=False)
    discriminator = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2),
                           nn.Conv2d(8, 1, 3, padding=1))
    fit_edge_discriminator(discriminator, cartoons, smoothed, steps=40, crop_size=12, lr=1e-2,
                           rng=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert discriminator(cartoons).mean() > discriminator(smoothed).mean()
    with pytest.raises(ValueError, match="larger than the images"):
        fit_edge_discriminator(discriminator, cartoons, smoothed, steps=1, crop_size=33)
