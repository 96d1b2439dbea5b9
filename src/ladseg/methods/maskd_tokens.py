"""MasKD's first stage: receptive tokens learned on a frozen teacher (method ``maskd_tokens``).

The network of the config (``model:``, started from the teacher's checkpoint by ``train.init_checkpoint``)
is frozen in eval mode; only T x K tokens train (K = the classes: the tokens read the logits)::

    with no_grad: z = T(x)                               # the teacher's main logits
    m_k = sigmoid(token_k . z)                           # N x T x h x w receptive masks
    loss = CE(z * sum_k m_k, y) + diversity_weight * Dice(m)

as the authors' ``train_mask_module.py`` (hunto/MasKD): 8 tokens from N(0, 0.01^2), SGD lr 0.1, momentum 0.9,
weight decay 1e-3, poly 0.9, 10k iterations at batch 16. The tokens are saved in the run's resume checkpoint
(``last.pth``, ``state.method.tokens``), which the ``maskd`` loss reads. Validation and the exported model are
the frozen network itself (its mIoU is the teacher's: a check that the right checkpoint was loaded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, seg_ce
from ladseg.losses.maskd import TOKENS_KEY, dice_diversity, token_masks
from ladseg.methods.base import METHODS, Batch, Method, MethodParams
from ladseg.models.segmentor import Segmentor, SegOutput


@dataclass
class MaskdTokensParams(MethodParams):
    """The ``method:`` section of the token stage.

    num_tokens: T (8 in the authors' code); init_std: the tokens' initial N(0, init_std^2) (0.01);
    diversity_weight: the Dice term's weight (1). aux_weight must stay 0: the frozen network's auxiliary
    CE, which the authors' loss adds with 0.4, sends no gradient into the tokens.
    """

    name: str = "maskd_tokens"
    aux_weight: float = 0.0
    num_tokens: int = 8
    init_std: float = 0.01
    diversity_weight: float = 1.0

    def check_config(self, key: str) -> None:
        """Called where the config is read, so --dry-run refuses these too."""
        if self.aux_weight:
            raise ConfigError(
                f"config key '{key}.aux_weight': maskd_tokens trains no head (the frozen network's auxiliary CE "
                f"has no gradient into the tokens); leave it 0, got {self.aux_weight}"
            )
        if self.num_tokens < 1 or not self.init_std > 0:
            raise ConfigError(
                f"config key '{key}': maskd_tokens needs num_tokens >= 1 and init_std > 0; got "
                f"{self.num_tokens}, {self.init_std}"
            )


@METHODS.register("maskd_tokens")
class MaskdTokens(Method[MaskdTokensParams]):
    """Learn MasKD's receptive tokens on a frozen network; nothing else trains."""

    Params = MaskdTokensParams

    def __init__(
        self,
        network: Segmentor,
        params: MaskdTokensParams,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(network, params, num_classes, ignore_index)
        params.check_config("method")  # also for parameters built in code, not read from a config
        network.requires_grad_(False)
        network.eval()
        ref = next(network.parameters())
        init = torch.empty(params.num_tokens, num_classes, device=ref.device).normal_(0.0, params.init_std)
        self.register_parameter(TOKENS_KEY, nn.Parameter(init))

    def train(self, mode: bool = True) -> MaskdTokens:
        super().train(mode)
        self.network.eval()  # frozen: running statistics and dropout as at inference
        return self

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        with torch.no_grad():
            out: SegOutput = self.network(batch["image"])
        masks = token_masks(self.tokens, out.logits)
        masked = out.logits.float() * masks.sum(1, keepdim=True)  # = sum_k z * m_k
        ce, _ = seg_ce(SegOutput(logits=masked, features=out.features), batch["mask"], self.ignore_index)
        diversity = dice_diversity(masks)
        loss = ce + self.params.diversity_weight * diversity
        return {"loss": loss, "ce": ce.detach(), "diversity": diversity.detach()}


__all__ = ["MaskdTokens", "MaskdTokensParams"]
