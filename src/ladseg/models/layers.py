"""Small building blocks shared by the heads: conv -> BN -> ReLU as one indexable Sequential.

Kept as an ``nn.Sequential`` (children ``0`` conv, ``1`` BN, ``2`` ReLU) so reference
checkpoints (CIRKD/LAD), which use the same layout, import by a plain key rename.
"""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


CLASSIFIER_STD = 0.01  # mmsegmentation's decode-head convention


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), BN to identity, zero biases: the usual ResNet init.

    A module's ``classifier`` conv (the last 1x1 of every head) gets N(0, 0.01^2) instead: Kaiming
    fan_out on a K-output 1x1 conv gives std sqrt(2/K) (0.5 for 8 classes), initial logits of
    std ~4 and a cross-entropy twice ln K, which measurably slowed short runs.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        classifier = getattr(m, "classifier", None)
        if isinstance(classifier, nn.Conv2d):
            nn.init.normal_(classifier.weight, std=CLASSIFIER_STD)
            if classifier.bias is not None:
                nn.init.zeros_(classifier.bias)
