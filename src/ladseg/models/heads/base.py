"""The decode-head base class and the ``HEADS`` registry.

Contract of a decode head (registered with ``@HEADS.register(name)``):
    __init__(in_channels: Sequence[int], num_classes: int, channels: int | None = None, dropout=..., ...)
    num_classes: int, channels: int  # classes predicted, width of the features before the classifier
    forward(feats) -> SegOutput      # reads the stage(s) it needs, e.g. feats[-1]

:class:`DecodeHead` owns what every head shares: the ``dropout`` -> 1x1 ``classifier`` that turns
the head's features into logits, and the weight init (Kaiming convs, N(0, 0.01^2) classifier, see
:func:`~ladseg.models.layers.init_weights`). A head builds its own layers first, then calls
:meth:`DecodeHead.add_classifier` and :meth:`DecodeHead.init_weights`: that order keeps the
state-dict keys (``dropout``, ``classifier``), their order and the seeded initial weights of the
checkpoints trained before the base class existed.
"""

from __future__ import annotations

from torch import Tensor, nn

from ladseg.models.layers import init_weights
from ladseg.registry import Registry


class DecodeHead(nn.Module):
    """Base of the decode heads (and of the FCN auxiliary head): classifier, dropout and init."""

    def __init__(self, num_classes: int, channels: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.channels = channels

    def add_classifier(self, dropout: float) -> None:
        """Create ``dropout`` and the 1x1 ``classifier`` (``channels`` -> ``num_classes``).

        Called after the head's own layers, so the keys keep their place in the state dict.
        """
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(self.channels, self.num_classes, 1)

    def init_weights(self) -> None:
        """Initialise every layer of the head (called once, at the end of ``__init__``)."""
        init_weights(self)

    def classify(self, features: Tensor) -> Tensor:
        """Logits of the head's features: ``classifier(dropout(features))``."""
        return self.classifier(self.dropout(features))


HEADS: Registry[DecodeHead] = Registry("head")
