"""CartoonGAN's two training steps, line by line with the paper (Sections 3.2 and 3.3).

:func:`init_step` and :func:`adversarial_step` hold the paper and nothing else: each loss in
LaTeX right above the line that computes it. How an update is carried out on the device at
hand (mixed precision, the gradient scaler, the guard against non-finite losses, the authors'
reset of convolution biases) is the job of :class:`Updater`, which wraps the steps from outside
and is passed in as ``update``: the steps read the same on a CPU and a GPU, on one process or
many.

Symbols: p a batch of photos, c of cartoons, e of edge-smoothed cartoons; G the generator, D
the discriminator; w the content weight; VGG the conv4_4 features of the content network.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cglib import env, losses, models

Update = Callable[[torch.optim.Optimizer, Tensor, str], None]
"""``update(optimizer, loss, name)``: one gradient step of ``optimizer`` on ``loss``."""


def init_step(G: nn.Module, optimizer: torch.optim.Optimizer, content: losses.ContentLoss,
              photos: Tensor, update: Update) -> dict[str, Tensor]:
    """The initialization phase: G alone learns to reproduce the photos' content.
    ``photos``: (N, 3, S, S) in [-1, 1]. Returns the unweighted content loss, detached."""
    generated = G(photos)
    # $\mathcal{L}_{init} = w \, \mathbb{E}_p \lVert VGG(G(p)) - VGG(p) \rVert_1$
    weighted, distance = content(photos, generated)
    update(optimizer, weighted, "content")
    return {"content": distance}


def adversarial_step(G: nn.Module, D: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                     pool: losses.ImagePool, content: losses.ContentLoss, photos: Tensor,
                     cartoons: Tensor, cartoons_smoothed: Tensor, update: Update, *,
                     kind: str = "lsgan", edge_loss: bool = True) -> dict[str, Tensor]:
    """One adversarial step: D, then G. Batches (N, 3, S, S) in [-1, 1]. ``kind``: the
    adversarial loss, ``"lsgan"`` (least squares, the authors' code) or ``"log"`` (the paper's
    formula); ``edge_loss=False`` is the ablation without the edge-smoothed cartoons. Returns
    the losses, detached."""
    generated = G(photos)

    # D: cartoons c are real; edge-smoothed cartoons e and generated images G(p) (through the
    # history pool) are fake; the terms are averaged (the paper sums them: the same gradients
    # at a third of the learning rate). kind="lsgan":
    # $\mathcal{L}_D = \tfrac{1}{3}\big(\mathbb{E}_c[(D(c) - 1)^2] + \mathbb{E}_e[D(e)^2]
    #                                   + \mathbb{E}_p[D(G(p))^2]\big)$
    # kind="log" (the paper's Eq. 2, negated to be minimized):
    # $\mathcal{L}_D = -\tfrac{1}{3}\big(\mathbb{E}_c[\log D(c)] + \mathbb{E}_e[\log(1 - D(e))]
    #                                    + \mathbb{E}_p[\log(1 - D(G(p)))]\big)$
    # edge_loss=False drops the e term and averages the other two.
    d_smoothed = D(cartoons_smoothed) if edge_loss else None
    d_loss, parts = losses.discriminator_loss(D(cartoons), d_smoothed, D(pool.query(generated)),
                                              kind, edge_loss)
    update(optimizers["discriminator"], d_loss, "discriminator")

    # G: fool D, held fixed, and keep the photo's content. kind="lsgan":
    # $\mathcal{L}_G = \mathbb{E}_p[(D(G(p)) - 1)^2]
    #                  + w \, \lVert VGG(G(p)) - VGG(p) \rVert_1$
    # kind="log" (the non-saturating form of the paper's $\log(1 - D(G(p)))$):
    # $\mathcal{L}_G = -\mathbb{E}_p[\log D(G(p))] + w \, \lVert VGG(G(p)) - VGG(p) \rVert_1$
    with frozen(D) as critic:
        adversarial = losses.generator_adversarial_loss(critic(generated), kind)
        weighted, distance = content(photos, generated)
        update(optimizers["generator"], adversarial + weighted, "generator")
    return {"discriminator": d_loss.detach(), **{f"d_{k}": v for k, v in parts.items()},
            "adversarial": adversarial.detach(), "content": distance}


def bind(step: Callable[..., dict[str, Tensor]], **available: Any
         ) -> Callable[..., dict[str, Tensor]]:
    """``step`` with each parameter it names, except ``update``, taken from ``available`` (so
    that one call site serves both steps: ``G``, ``D``, ``optimizer``, ``optimizers``,
    ``pool``, ``content``, a batch per domain, the options ``kind`` and ``edge_loss``)."""
    wanted = [name for name in inspect.signature(step).parameters if name != "update"]
    return functools.partial(step, **{name: available[name] for name in wanted})


@contextlib.contextmanager
def frozen(D: nn.Module) -> Iterator[nn.Module]:
    """D as a fixed function for G's update: its parameters take no gradient inside the
    block. Yields the module to call (the network itself when D is wrapped for data-parallel
    training, whose gradient synchronization is for D's own update)."""
    network = getattr(D, "module", D)
    network.requires_grad_(False)
    try:
        yield network
    finally:
        network.requires_grad_(True)


class _NonFiniteLoss(ArithmeticError):
    """A loss came out NaN or infinite: :class:`Updater`'s signal to abandon the step."""


class NonFiniteLossError(RuntimeError):
    """Too many steps had NaN or infinite losses: training stops."""


class Updater:
    """Carries out the updates of a step: the ``update`` the step functions are given.

    :meth:`apply` calls a step function the way the device needs: convolution biases reset to
    zero first (the authors' trainer does it before every step), the forward passes under
    ``precision`` (autocast), the backward passes with a gradient scaler for fp16. A loss that
    is not finite abandons the rest of the step (no update is made from it); after
    ``max_nonfinite`` such steps :class:`NonFiniteLossError` stops training.
    """

    def __init__(self, device: torch.device, precision: str, max_nonfinite: int,
                 zero_biases: bool = True) -> None:
        self.device, self.precision = device, precision
        self.max_nonfinite, self.zero_biases = max_nonfinite, zero_biases
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.nonfinite = 0  # abandoned steps so far (saved with the run)
        self._stepped = False  # an optimizer stepped in this training step

    def __call__(self, optimizer: torch.optim.Optimizer, loss: Tensor, name: str) -> None:
        if not torch.isfinite(loss).all():
            raise _NonFiniteLoss(name)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):
            self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self._stepped = True

    def apply(self, step: Callable[..., dict[str, Tensor]], networks: tuple[nn.Module, ...],
            at: int = 0) -> dict[str, Tensor]:
        """``step(update=self)`` (a step function with everything else bound, e.g. by
        :func:`functools.partial`) for global step ``at``, whose updates change ``networks``;
        returns its losses, or {} when a non-finite loss abandoned it."""
        if self.zero_biases:
            for network in networks:
                models.zero_conv_biases(network)
        self._stepped = False
        try:
            with env.autocast(self.device, self.precision):
                return step(update=self)
        except _NonFiniteLoss as error:
            return self._abandon(str(error), networks, at)
        finally:
            if self._stepped:  # the scaler closes an iteration in which it stepped
                self.scaler.update()

    def _abandon(self, name: str, networks: tuple[nn.Module, ...], at: int) -> dict:
        for network in networks:
            network.zero_grad(set_to_none=True)
        self.nonfinite += 1
        if self.nonfinite > self.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.nonfinite} steps gave NaN or infinite losses (last: {name}, step {at}); "
                "stopped without writing the bad weights. The last checkpoint is intact: "
                "lower the learning rate or use precision='fp32', then resume")
        warnings.warn(f"step {at}: the {name} loss is not finite; step skipped "
                      f"({self.nonfinite} so far)", RuntimeWarning, stacklevel=3)
        return {}


def bf16_agrees(generator: nn.Module, content: losses.ContentLoss, photos: Tensor, lr: float,
                count: int = 3, tolerance: float = 0.05) -> bool:
    """True when ``count`` initialization steps from copies of ``generator`` on ``photos``
    (N, 3, S, S) in [-1, 1] give finite losses in bf16 within ``tolerance`` (relative) of
    fp32: the check behind :func:`cglib.env.training_precision` on a CPU."""
    trajectories = []
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(generator)
        optimizer = torch.optim.Adam(model.parameters(), lr, betas=(0.5, 0.999))
        updater = Updater(photos.device, precision, max_nonfinite=count)
        step = functools.partial(init_step, model, optimizer, content, photos)
        with warnings.catch_warnings():  # a skipped step is this check's answer, not news
            warnings.simplefilter("ignore", RuntimeWarning)
            trajectories.append([float(updater.apply(step, (model,)).get("content", math.nan))
                                 for _ in range(count)])
    fp32, bf16 = np.array(trajectories[0]), np.array(trajectories[1])
    return bool(np.isfinite(bf16).all() and
                (np.abs(bf16 - fp32) <= tolerance * np.abs(fp32)).all())
