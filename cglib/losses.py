"""The objective of CartoonGAN: L(G, D) = L_adv(G, D) + w * L_con(G, D) (paper, Section 3.2).

- The edge-promoting adversarial loss (:func:`discriminator_loss`,
  :func:`generator_adversarial_loss`): the discriminator D must call cartoons c real, and both
  their edge-smoothed copies e and generated images G(p) fake. As a formula (the paper's
  log loss, maximized by D)::

      L_adv = E_c[log D(c)] + E_e[log(1 - D(e))] + E_p[log(1 - D(G(p)))]

  ``kind="lsgan"`` (default) is what the authors' code trains with: least squares, scores
  pushed to 1 for real and 0 for fake, no sigmoid. ``kind="log"`` is the paper's formula,
  computed from logits (D's raw scores) so that it stays finite for any score.
- The content loss (:class:`ContentLoss`): L1 distance between VGG19 conv4_4 features of the
  photo and of the generated image, times the content weight w = 10.
- :class:`ImagePool`: the history of generated images that D is shown (CycleGAN's, size 50).
- :func:`fit_edge_discriminator`: D alone learning cartoons against their edge-smoothed
  copies, the edge-promoting idea in a few lines (notebook 03).

Every loss is computed in float32, also under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ADVERSARIAL_KINDS = ("lsgan", "log")
CONTENT_KINDS = ("l1", "l2")


def adversarial_loss(scores: Tensor, real: bool, kind: str = "lsgan") -> Tensor:
    """One term of the adversarial loss: how far D's ``scores`` are from calling them
    ``real`` (True) or fake (False). A scalar float32 tensor.

    ``scores``: D's output, any shape (the patch maps are (N, 1, H/4, W/4)), raw scores of any
    dtype. ``kind="lsgan"``: mean((s - t)^2) with target t = 1 for real, 0 for fake.
    ``kind="log"``: the paper's log loss, -mean(log sigmoid(s)) for real and
    -mean(log(1 - sigmoid(s))) for fake, computed stably from the logits s.
    """
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"adversarial loss kind {kind!r} is unknown; use 'lsgan' or 'log'")
    scores = scores.float()
    target = torch.full_like(scores, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(scores, target)
    return F.binary_cross_entropy_with_logits(scores, target)


def discriminator_loss(
    d_cartoon: Tensor,
    d_smoothed: Tensor | None,
    d_generated: Tensor,
    kind: str = "lsgan",
    edge_term: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """D's loss: cartoons as real, edge-smoothed cartoons and generated images as fake.

    Arguments are D's scores on a batch of cartoons c, of edge-smoothed cartoons e and of
    generated images G(p) (any shapes, e.g. (N, 1, H/4, W/4)). Returns ``(loss, parts)``:
    ``loss`` is the mean of the terms, as the authors' code averages them (the paper's sum is
    three times as large: the same gradients at a third of the learning rate), with gradients;
    ``parts`` holds each term detached, for logging: ``"cartoon"``, ``"smoothed"``,
    ``"generated"``. ``edge_term=False`` is the ablation "no edge loss": the smoothed term is
    dropped (``d_smoothed`` may then be None) and the loss is the mean of the other two.
    With ``kind="log"`` the loss equals -(1/3) [log D(c) + log(1 - D(e)) + log(1 - D(G(p)))]
    with D = sigmoid(scores), averaged over the patches: the paper's L_adv, negated for
    minimizing.
    """
    parts = {"cartoon": adversarial_loss(d_cartoon, True, kind)}
    if edge_term:
        if d_smoothed is None:
            raise ValueError("d_smoothed is None, but edge_term=True needs D's scores on the "
                             "edge-smoothed cartoons; pass them, or edge_term=False")
        parts["smoothed"] = adversarial_loss(d_smoothed, False, kind)
    parts["generated"] = adversarial_loss(d_generated, False, kind)
    loss = torch.stack(list(parts.values())).mean()
    return loss, {name: value.detach() for name, value in parts.items()}


def generator_adversarial_loss(d_generated: Tensor, kind: str = "lsgan") -> Tensor:
    """G's adversarial term: D's scores on generated images, pushed towards "real".

    ``kind="lsgan"``: mean((D(G(p)) - 1)^2) (the authors' code). ``kind="log"``:
    -mean(log D(G(p))), the non-saturating form of the paper's log(1 - D(G(p))) that GANs are
    trained with (same fixed point, but strong gradients while D still wins). Scalar float32.
    """
    return adversarial_loss(d_generated, True, kind)


class ContentLoss(nn.Module):
    """L_con = w * E_p[ || VGG(G(p)) - VGG(p) ||_1 ]: the generated image keeps the photo's
    content in VGG19 conv4_4 feature space.

    ``vgg``: the content network (a :class:`cglib.vgg.VGG19Features`; frozen, held as a
    submodule so that ``.to(device)`` moves it). ``kind``: ``"l1"`` (the paper: mean absolute
    difference of the features) or ``"l2"`` (mean squared difference, for the ablation).
    ``weight``: w, the content weight (10 in the paper).
    """

    def __init__(self, vgg: nn.Module, kind: str = "l1", weight: float = 10.0) -> None:
        super().__init__()
        if kind not in CONTENT_KINDS:
            raise ValueError(f"content loss kind {kind!r} is unknown; use 'l1' or 'l2'")
        self.vgg, self.kind, self.weight = vgg, kind, weight

    def forward(self, photos: Tensor, generated: Tensor) -> tuple[Tensor, Tensor]:
        """``photos``, ``generated``: (N, 3, H, W) float RGB in [-1, 1]. Returns
        ``(weighted, value)``: w times the distance (scalar float32, with gradients towards
        ``generated``) and the unweighted distance, detached, for logging."""
        if photos.shape != generated.shape:
            raise ValueError(f"the content loss compares images of one shape; got photos "
                             f"{tuple(photos.shape)} and generated {tuple(generated.shape)}")
        with torch.no_grad():
            target = self.vgg(photos).float()
        features = self.vgg(generated).float()
        if self.kind == "l1":
            value = F.l1_loss(features, target)
        else:
            value = F.mse_loss(features, target)
        return self.weight * value, value.detach()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, weight={self.weight}"


class ImagePool:
    """A history of generated images shown to D instead of only the newest (CycleGAN's rule,
    which the authors' code uses with ``size=50``): D keeps being reminded of what G used to
    produce, which damps oscillation.

    :meth:`query` takes a batch (N, 3, H, W) and returns one of the same shape. While fewer
    than ``size`` images are stored, each new image is stored and returned. Once full, each
    new image is, with probability 1/2, swapped for a randomly chosen stored one (which is
    returned; the new one takes its place), and otherwise returned as it is. ``size=0``
    disables the pool. Draws come from ``rng`` (a CPU ``torch.Generator``; by default one
    seeded from torch's global generator, so :func:`cglib.env.seed_everything` fixes them).
    Stored images are detached copies and must all have one shape.
    """

    def __init__(self, size: int = 50, rng: torch.Generator | None = None) -> None:
        if size < 0:
            raise ValueError(f"ImagePool size {size} is negative; use 0 to disable the pool")
        self.size = size
        if rng is None:
            rng = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.rng = rng
        self.images: list[Tensor] = []

    @property
    def count(self) -> int:
        """How many images are stored (at most ``size``)."""
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) generated images -> (N, 3, H, W) images for D, detached from G."""
        images = images.detach()
        if self.size == 0:
            return images
        returned = []
        for image in images:
            if self.count < self.size:
                self.images.append(image.clone())
                returned.append(image)
            elif torch.rand((), generator=self.rng).item() < 0.5:
                index = int(torch.randint(self.size, (), generator=self.rng))
                returned.append(self.images[index])
                self.images[index] = image.clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def state_dict(self) -> dict[str, Tensor | int]:
        """Tensors and ints only (``torch.load(weights_only=True)`` reads it back):
        ``size``, ``count``, ``images`` (count, 3, H, W) on the CPU, ``rng_state``."""
        images = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "count": self.count, "images": images,
                "rng_state": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Tensor | int], device: str | torch.device = "cpu"
                        ) -> None:
        """Restore what :meth:`state_dict` saved; stored images go to ``device``."""
        if state["size"] != self.size:
            raise ValueError(f"the saved image pool holds up to {state['size']} images, this one "
                             f"{self.size}; create ImagePool(size={state['size']}) to resume it")
        self.images = list(state["images"].to(device).unbind(0))[: state["count"]]
        self.rng.set_state(state["rng_state"])


def fit_edge_discriminator(
    discriminator: nn.Module,
    cartoons: Tensor,
    smoothed: Tensor,
    steps: int,
    batch_size: int = 8,
    crop_size: int | None = None,
    lr: float = 2e-4,
    kind: str = "lsgan",
    rng: torch.Generator | None = None,
) -> list[float]:
    """Train D alone to tell cartoons (real) from their edge-smoothed copies (fake).

    The edge-promoting idea in isolation: the pairs differ only along edges, so whatever D
    learns here is about clear edges. ``cartoons``, ``smoothed``: (N, 3, H, W) float RGB in
    [-1, 1], ``smoothed[i]`` the edge-smoothed ``cartoons[i]``. Each step draws ``batch_size``
    pairs (from ``rng``), cut to one random ``crop_size`` x ``crop_size`` window per pair
    if ``crop_size`` is given (small crops keep a CPU run short), and takes one Adam step
    (betas 0.5, 0.999, as the authors) on the mean of the two adversarial terms. Returns the
    loss of every step. Leaves D in train mode on its own device.
    """
    if cartoons.shape != smoothed.shape:
        raise ValueError(f"cartoons {tuple(cartoons.shape)} and smoothed "
                         f"{tuple(smoothed.shape)} must be pairs of one shape")
    device = next(discriminator.parameters()).device
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    discriminator.train()
    history = []
    height, width = cartoons.shape[-2:]
    crop_height, crop_width = (height, width) if crop_size is None else (crop_size, crop_size)
    if crop_height > height or crop_width > width:
        raise ValueError(f"crop_size={crop_size} is larger than the images ({height}x{width})")
    for _ in range(steps):
        index = torch.randint(len(cartoons), (batch_size,), generator=rng)
        tops = torch.randint(height - crop_height + 1, (batch_size,), generator=rng)
        lefts = torch.randint(width - crop_width + 1, (batch_size,), generator=rng)
        real_batch, fake_batch = [], []
        for i, top, left in zip(index.tolist(), tops.tolist(), lefts.tolist(), strict=True):
            window = (i, slice(None), slice(top, top + crop_height), slice(left, left + crop_width))
            real_batch.append(cartoons[window])
            fake_batch.append(smoothed[window])
        real = adversarial_loss(discriminator(torch.stack(real_batch).to(device)), True, kind)
        fake = adversarial_loss(discriminator(torch.stack(fake_batch).to(device)), False, kind)
        loss = (real + fake) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history
