"""A separate input branch for a LAD teacher's label channels (RITM's "Conv1S", ``model.label_branch``).

By default a LAD teacher reads its label channels through a widened first convolution (the paper's
4th input channel). With ``model.label_branch: true`` the backbone reads the image alone (3 channels,
its pretrained first conv untouched) and the label channels take their own path, as the click maps of
RITM (Sofiiuk et al., "Reviving Iterative Training with Mask Guidance for Interactive Segmentation",
2021, "Conv1S"), which beat widening the first conv there::

    x[:, 3:] -> conv1x1 (16) -> ReLU -> conv3x3 stride 2 (stem width) -> x scale (learned, starts 0.05)
             -> added to the backbone's stem output (``Backbone.forward_stem``, e.g. ResNet before its
                max-pool, STDC's first ConvX, EfficientNet-Lite's conv_stem block)

The convolutions have no bias (RITM's have): a zero label then adds exactly nothing, so the teacher fed
a zero label channel is exactly its image path, as with the widened conv.
The branch lives outside the backbone, so ``optim.head_lr_mult`` sets its learning rate with the heads'
(RITM trains its pretrained backbone at 0.1x: ``optim.lr`` x 0.1 and ``optim.head_lr_mult: 10``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ladseg.models.layers import init_weights

HIDDEN = 16  # RITM's width after the 1x1 conv
SCALE_INIT = 0.05  # RITM's ScaleLayer init


class LabelBranch(nn.Module):
    """Label channels -> features added to the backbone's stem output (``stride`` = its stride)."""

    def __init__(self, label_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        if label_channels < 1:
            raise ValueError(f"a label branch needs >= 1 label channel, got {label_channels}")
        self.in_channels = int(label_channels)
        self.conv1 = nn.Conv2d(label_channels, HIDDEN, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(HIDDEN, out_channels, 3, stride=stride, padding=1, bias=False)
        self.scale = nn.Parameter(torch.tensor(SCALE_INIT))
        init_weights(self)

    def forward(self, label: Tensor) -> Tensor:
        return self.conv2(self.relu(self.conv1(label))) * self.scale
