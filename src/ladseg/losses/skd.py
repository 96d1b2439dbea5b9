"""Structured KD (Liu et al., CVPR 2019 / TPAMI 2020): pair-wise and (optional) holistic distillation.

The pixel-wise term of SKD is the registered ``kd`` loss (weight 10 in SKD); configs list both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, autograd, nn
from torch.func import functional_call

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair
from ladseg.models.segmentor import SegOutput


def pool_patches(feat: Tensor, pool_scale: float, patch_size: int | None) -> Tensor:
    """Max-pool the map into patches (graph nodes): ``patch_size`` pixels, or ``pool_scale`` of each side."""
    h, w = feat.shape[-2:]
    if patch_size is not None:
        kh = kw = patch_size
    else:
        kh, kw = max(1, int(h * pool_scale)), max(1, int(w * pool_scale))
    if kh == 1 and kw == 1:
        return feat
    return F.max_pool2d(feat, kernel_size=(kh, kw), stride=(kh, kw), ceil_mode=True)


def similarity_graph(feat: Tensor) -> Tensor:
    """Cosine similarity of every node pair: N x P x P from N x C x h x w."""
    flat = F.normalize(feat.flatten(2), dim=1)
    return flat.transpose(1, 2) @ flat


def pairwise_loss(s_feat: Tensor, t_feat: Tensor) -> Tensor:
    """Mean squared difference of the two similarity graphs (widths may differ)."""
    return (similarity_graph(s_feat) - similarity_graph(t_feat)).pow(2).mean()


class Discriminator(nn.Module):
    """A small WGAN critic on class-probability maps: strided convs, LeakyReLU, a score per image."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for mult in (1, 2, 4):
            layers += [nn.Conv2d(c, width * mult, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            c = width * mult
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).mean(dim=(1, 2, 3))


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E[(||grad critic(x_hat)|| - 1)^2]`` on random interpolates."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@LOSSES.register("skd")
class SKDLoss(DistillLoss):
    """Pair-wise similarity distillation on decoder features, plus an optional holistic adversarial term.

    Pair-wise: features max-pooled into patches (``pool_scale`` 0.5 of each side, the official SKD
    run script; CIRKD uses ``patch_size: 2``), cosine similarity of every patch pair, squared error
    averaged. Widths may differ: the graphs are P x P whatever C is.

    Holistic (``adversarial: true``, default off): a critic D scores class-probability maps; in the
    same backward pass D minimises ``D(s) - D(t) + gp_weight * GP`` (student detached) and the student
    minimises ``-D(s)`` through a parameter-detached copy of D, each scaled by ``adv_weight`` (SKD's
    lambda_d = 0.1, lambda_gp = 10). D is trained by the method's optimiser, not SKD's separate Adam.
    The adversarial term is not zero when student == teacher (the gradient penalty stays).

    The loss is ``pairwise_weight * pairwise (+ holistic)`` and the default ``weight`` is 1, so the
    terms keep SKD's relative weights (pair-wise 0.5 in the official script, CIRKD uses 10 with 2x2 patches).
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        pairwise_weight: float = 0.5,
        pool_scale: float = 0.5,
        patch_size: int | None = None,
        adversarial: bool = False,
        adv_weight: float = 0.1,
        gp_weight: float = 10.0,
        disc_width: int = 64,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        if pairwise_weight < 0 or adv_weight < 0 or gp_weight < 0:
            raise ConfigError("skd pairwise_weight, adv_weight and gp_weight must be >= 0")
        if not 0 < pool_scale <= 1:
            raise ConfigError(f"skd pool_scale must be in (0, 1], got {pool_scale}")
        if patch_size is not None and patch_size < 1:
            raise ConfigError(f"skd patch_size must be >= 1 or null, got {patch_size}")
        self.pairwise_weight = float(pairwise_weight)
        self.pool_scale = float(pool_scale)
        self.patch_size = patch_size
        self.adv_weight = float(adv_weight)
        self.gp_weight = float(gp_weight)
        self.discriminator = Discriminator(num_classes, int(disc_width)) if adversarial else None

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        s = pool_patches(s, self.pool_scale, self.patch_size)
        t = pool_patches(t, self.pool_scale, self.patch_size)
        loss = self.pairwise_weight * pairwise_loss(s, t)
        if self.discriminator is not None:
            loss = loss + self.adv_weight * self.holistic(student.logits, teacher.logits)
        return loss

    def holistic(self, s_logits: Tensor, t_logits: Tensor) -> Tensor:
        """Critic loss (gradients into D only) + generator loss (gradients into the student only)."""
        assert self.discriminator is not None
        s_logits, t_logits = feature_pair(s_logits, t_logits)
        ps, pt = s_logits.softmax(dim=1), t_logits.softmax(dim=1)
        d = self.discriminator
        critic = d(ps.detach()).mean() - d(pt).mean() + self.gp_weight * gradient_penalty(d, pt, ps.detach())
        frozen = {k: v.detach() for k, v in d.named_parameters()}
        generator = -functional_call(d, frozen, (ps,)).mean()
        return critic + generator


__all__ = [
    "Discriminator",
    "SKDLoss",
    "gradient_penalty",
    "pairwise_loss",
    "pool_patches",
    "similarity_graph",
]
