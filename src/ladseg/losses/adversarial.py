"""The holistic adversarial term CIRKD adds to its SKD, IFVD and CWD runs (hinge GAN on the logits).

CIRKD's ``train_kd.py`` (``--lambda-adv 0.001 --lambda-d 0.1``) pairs every logit distillation with a
SAGAN-style discriminator D that reads the raw class logits at head resolution (no softmax; D's
first layer is a BatchNorm over the classes). In one iteration:

    generator term (in the student's loss):   lambda_adv * -mean(D(s))
    main optimiser step (student, adapters)
    discriminator step (its own Adam, lr 4e-4, betas 0.9 / 0.99, no weight decay, no schedule):
        lambda_d * (mean(relu(1 - D(t))) + mean(relu(1 + D(s.detach()))))

Here the loss owns D and its Adam. ``forward`` returns the generator term (the ``distill`` method
multiplies it by ``weight``, 0.001) and keeps the step's detached logits; the engine calls
:meth:`AdversarialLoss.after_optimizer_step` after its optimiser step, which runs D's step on them.
D's parameters are left out of the engine's optimiser (``separately_optimized_parameters``); D's
weights are part of the method state (not of the exported student), and its Adam state is saved
with the resume state, so a resumed run continues exactly.

D: four spectral-normalised 4x4 stride-2 convs (width, 2, 4, 8 x width; LeakyReLU 0.1), self-attention
after the third and the fourth, a 4x4 conv without padding to one score per position. It needs a
map of at least 64 x 64 (CIRKD's 512 x 1024 crops give 64 x 128 logits); a smaller map is up-sampled
to 64 on that side (the reference would fail there).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss, SeparatelyOptimized
from ladseg.losses.common import feature_pair
from ladseg.models.segmentor import SegOutput
from ladseg.process_group import all_reduce_mean, world_size

#: the smallest map side the discriminator reads (four halvings, then a 4 x 4 valid conv)
MIN_SIDE = 64


def _unit(v: Tensor, eps: float = 1e-12) -> Tensor:
    return v / (v.norm() + eps)


class SNConv2d(nn.Module):
    """A conv whose weight is divided by its largest singular value (one power iteration per forward).

    As SAGAN's spectral norm: ``v <- W^T u / |.|``, ``u <- W v / |.|``, ``sigma = u . W v`` with
    ``u``, ``v`` held as buffers (updated on every forward, saved with the state); the gradient
    reaches ``weight`` through ``sigma`` too.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)  # PyTorch's default init
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding = stride, padding
        rows, cols = out_channels, in_channels * kernel_size * kernel_size
        self.register_buffer("u", _unit(torch.randn(rows)))
        self.register_buffer("v", _unit(torch.randn(cols)))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.flatten(1)
        with torch.no_grad():
            self.v.copy_(_unit(w.t() @ self.u))
            self.u.copy_(_unit(w @ self.v))
        sigma = torch.dot(self.u.clone(), w @ self.v.clone())
        return F.conv2d(x, self.weight / sigma, self.bias, self.stride, self.padding)


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``x + gamma * V softmax(Q^T K)^T`` (gamma starts at 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # N x P x C/8
        k = self.key(x).flatten(2)  # N x C/8 x P
        attn = torch.softmax(q @ k, dim=-1)  # N x P x P, row p: where position p looks
        out = self.value(x).flatten(2) @ attn.transpose(1, 2)  # N x C x P
        return self.gamma * out.view(n, c, h, w) + x


class Discriminator(nn.Module):
    """CIRKD's SAGAN discriminator on class logits: N x K x H x W -> N x 1 x h x w scores."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.preprocess = nn.BatchNorm2d(num_classes)
        chans = [num_classes, width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList(SNConv2d(chans[i], chans[i + 1], 4, 2, 1) for i in range(4))
        self.attn3 = SelfAttention(chans[3])
        self.attn4 = SelfAttention(chans[4])
        self.last = nn.Conv2d(chans[4], 1, 4)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h < MIN_SIDE or w < MIN_SIDE:
            x = F.interpolate(
                x, size=(max(h, MIN_SIDE), max(w, MIN_SIDE)), mode="bilinear", align_corners=True
            )
        x = self.preprocess(x)
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.1)
            if i == 2:
                x = self.attn3(x)
            elif i == 3:
                x = self.attn4(x)
        return self.last(x)


def generator_hinge(d_student: Tensor) -> Tensor:
    """The student's hinge-GAN term: ``-mean(D(s))``."""
    return -d_student.mean()


def discriminator_hinge(d_student: Tensor, d_teacher: Tensor) -> Tensor:
    """D's hinge loss: the teacher's logits are real, the student's fake."""
    return F.relu(1.0 - d_teacher).mean() + F.relu(1.0 + d_student).mean()


@LOSSES.register("adversarial")
class AdversarialLoss(DistillLoss, SeparatelyOptimized):
    """CIRKD's holistic hinge-GAN term on the logits; D is trained by its own Adam (see the module doc).

    weight (0.001, CIRKD's lambda_adv) scales the generator term; ``d_weight`` (0.1, lambda_d) D's
    hinge loss; ``d_lr`` / ``d_beta1`` / ``d_beta2``: D's Adam (4e-4, 0.9, 0.99); ``disc_width``: D's
    first width (64). Under DDP, D's gradients are averaged over the processes before its step.
    """

    default_weight: ClassVar[float] = 0.001

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        d_weight: float = 0.1,
        d_lr: float = 4e-4,
        d_beta1: float = 0.9,
        d_beta2: float = 0.99,
        disc_width: int = 64,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        if d_weight < 0:
            raise ConfigError(f"adversarial d_weight must be >= 0, got {d_weight}")
        if d_lr <= 0:
            raise ConfigError(f"adversarial d_lr must be > 0, got {d_lr}")
        if not (0 <= d_beta1 < 1 and 0 <= d_beta2 < 1):
            raise ConfigError(f"adversarial d_beta1 and d_beta2 must be in [0, 1), got {d_beta1}, {d_beta2}")
        if disc_width < 8:
            raise ConfigError(f"adversarial disc_width must be >= 8, got {disc_width}")
        self.d_weight = float(d_weight)
        self.d_lr, self.d_betas = float(d_lr), (float(d_beta1), float(d_beta2))
        self.discriminator = Discriminator(num_classes, int(disc_width))
        self._optimizer: torch.optim.Adam | None = None  # built on first use (after any .to(device))
        self._pending: tuple[Tensor, Tensor] | None = None  # this step's detached (student, teacher) logits

    # -- the generator term (in the student's loss) -----------------------------------------------
    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.logits, teacher.logits)
        if self.training and torch.is_grad_enabled():
            self._pending = (s.detach(), t)
        return generator_hinge(self.discriminator(s))

    # -- the discriminator's own step ---------------------------------------------------------------
    def separately_optimized_parameters(self) -> list[nn.Parameter]:
        """D's parameters: stepped by :meth:`after_optimizer_step`, never by the engine's optimiser."""
        return list(self.discriminator.parameters())

    def optimizer(self) -> torch.optim.Adam:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(
                self.separately_optimized_parameters(), self.d_lr, self.d_betas
            )
        return self._optimizer

    def discriminator_loss(self, s_logits: Tensor, t_logits: Tensor) -> Tensor:
        """``d_weight`` x hinge, D reading the student's logits first and then the teacher's (CIRKD's order)."""
        d_s = self.discriminator(s_logits.detach())
        d_t = self.discriminator(t_logits.detach())
        return self.d_weight * discriminator_hinge(d_s, d_t)

    def after_optimizer_step(self) -> dict[str, Tensor]:
        """D's step on the logits of the step just taken (call once after each main optimiser step)."""
        if self._pending is None:
            return {}
        s, t = self._pending
        self._pending = None
        opt = self.optimizer()
        opt.zero_grad(set_to_none=True)  # drops what the generator term left in D's .grad
        with torch.autocast(s.device.type, enabled=False):
            loss = self.discriminator_loss(s.float(), t.float())
        loss.backward()
        if world_size() > 1:  # D's backward ran outside DDP: average its gradients by hand
            for p in self.separately_optimized_parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                all_reduce_mean(p.grad)
        opt.step()
        return {"d": loss.detach()}

    def optimizer_state_dict(self) -> dict[str, Any]:
        return self.optimizer().state_dict()

    def load_optimizer_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer().load_state_dict(state)


__all__ = [
    "AdversarialLoss",
    "Discriminator",
    "SNConv2d",
    "SelfAttention",
    "discriminator_hinge",
    "generator_hinge",
]
