"""Multi-scale evaluation as the reference does it: floored sizes, averaged logits (issue 14, item 14)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ladseg.engine.inference import multiscale_inference
from ladseg.models.segmentor import SegOutput


class _Net(nn.Module):
    """A stride-2 conv 'segmentor' whose logit magnitude depends on the input size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> SegOutput:
        logits = self.conv(x) * (x.shape[-1] / 16.0)
        return SegOutput(logits=logits, features=logits)


def _reference(net: nn.Module, image: torch.Tensor, scales: list[float], flip: bool) -> torch.Tensor:
    """CIRKD/LAD eval.py: F.interpolate(scale_factor) (floors), up-sample logits, mean (flip: 0.5 * (a + b))."""
    h, w = image.shape[-2:]

    def whole(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(net(x).logits, size=(h, w), mode="bilinear", align_corners=True)

    full = torch.zeros(1, 4, h, w)
    for s in scales:
        x = F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=True)
        probs = whole(x)
        if flip:
            probs = 0.5 * (probs + torch.flip(whole(torch.flip(x, dims=[3])), dims=[3]))
        full += probs
    return full / len(scales)


@pytest.mark.parametrize("flip", [False, True])
def test_reference_multiscale_matches_cirkd_eval(flip: bool) -> None:
    net = _Net().eval()
    image = torch.randn(1, 3, 33, 45)
    scales = [0.5, 0.75, 1.0, 1.25, 1.75]  # 33 * 0.75 = 24.75: floor 24, round 25
    with torch.no_grad():
        expected = _reference(net, image, scales, flip)
        ours = multiscale_inference(net, image, scales, flip=flip, average="logits", rounding="floor")
        default = multiscale_inference(net, image, scales, flip=flip)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert round((ours.abs().sum() / expected.abs().sum()).item(), 3) == 1.000
    assert (default >= 0).all() and torch.allclose(default.sum(1), torch.ones(1, 33, 45))  # probabilities
    with pytest.raises(ValueError, match="average"):
        multiscale_inference(net, image, scales, average="votes")
