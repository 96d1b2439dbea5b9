import pytest
import torch
from torch import nn

from ladseg.engine.evaluation import evaluate
from ladseg.engine.inference import infer, slide_inference
from ladseg.engine.inference_settings import InferenceSettings
from ladseg.models import build_model
from ladseg.models.segmentor import SegOutput


class PixelNet(nn.Module):
    """Per-pixel linear logits, sub-sampled by ``stride`` (like a network's output stride)."""

    def __init__(self, k: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, k, 1)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> SegOutput:
        y = self.conv(x)[..., :: self.stride, :: self.stride]
        return SegOutput(y, y)


def test_slide_with_crop_equal_to_image_is_whole() -> None:
    model = build_model("fcn", "resnet18", 3, head={"channels": 8}).eval()
    x = torch.randn(1, 3, 32, 40)
    whole = infer(model, x, "whole")
    assert whole.shape == (1, 3, 32, 40)
    torch.testing.assert_close(infer(model, x, "slide", crop_size=[32, 40], stride=[16, 16]), whole)


def test_slide_count_normalises_overlaps_and_pads_small_inputs() -> None:
    # a 1x1 conv at full resolution gives every pixel the same logits in any window, so the
    # count-normalised sum over overlapping (and padded) windows must equal the whole image
    model = PixelNet(stride=1).eval()
    for shape, crop, stride in (((2, 3, 30, 50), (16, 16), (10, 7)), ((1, 3, 10, 12), (16, 16), None)):
        x = torch.randn(shape)
        out = slide_inference(model, x, crop_size=crop, stride=stride)
        torch.testing.assert_close(out, infer(model, x, "whole"))


def test_slide_gives_the_same_scores_however_many_windows_run_together() -> None:
    model = build_model("fcn", "resnet18", 3, head={"channels": 8}).eval()
    x = torch.randn(2, 3, 40, 56)
    one_by_one = slide_inference(model, x, crop_size=(24, 24), stride=(16, 16), max_pixels_per_pass=1)
    all_at_once = slide_inference(model, x, crop_size=(24, 24), stride=(16, 16))
    three = slide_inference(
        model, x, crop_size=(24, 24), stride=(16, 16), max_pixels_per_pass=3 * 2 * 24 * 24
    )
    torch.testing.assert_close(all_at_once, one_by_one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(three, one_by_one, rtol=1e-4, atol=1e-5)


def test_multiscale_single_scale_without_flip_is_softmax_of_whole() -> None:
    model = build_model("fcn", "resnet18", 4, head={"channels": 8}).eval()
    x = torch.randn(1, 3, 32, 32)
    ms = infer(model, x, "multiscale", scales=[1.0], flip=False)
    torch.testing.assert_close(ms, infer(model, x, "whole").softmax(1))


def test_multiscale_flip_averages_probabilities() -> None:
    model = PixelNet().eval()
    x = torch.randn(1, 3, 24, 24)
    ms = infer(model, x, "multiscale", scales=[1.0, 0.5], flip=True)
    assert ms.shape == (1, 3, 24, 24)
    torch.testing.assert_close(ms.sum(1), torch.ones(1, 24, 24))
    manual = sum(
        infer(model, inp, "whole").flip(-1).softmax(1) if f else infer(model, inp, "whole").softmax(1)
        for inp, f in ((x, False), (x.flip(-1), True))
    )
    half = torch.nn.functional.interpolate(x, size=(12, 12), mode="bilinear", align_corners=True)
    for inp, f in ((half, False), (half.flip(-1), True)):
        logits = model(inp).logits  # head resolution -> 24 x 24 in one resampling (as the reference)
        logits = logits.flip(-1) if f else logits
        manual = manual + torch.nn.functional.interpolate(
            logits, size=(24, 24), mode="bilinear", align_corners=True
        ).softmax(1)
    torch.testing.assert_close(ms, manual / 4)


def test_evaluate_counts_a_perfect_model() -> None:
    class Oracle(nn.Module):
        def forward(self, x: torch.Tensor) -> SegOutput:
            return SegOutput(x[:, :3] * 10, x)

    mask = torch.randint(0, 3, (2, 8, 8))
    image = torch.nn.functional.one_hot(mask, 3).permute(0, 3, 1, 2).float()
    mask[:, 0] = 255
    loader = [{"image": image, "mask": mask}]
    for mode, kw in (
        ("whole", {}),
        ("slide", {"crop_size": [4, 4]}),
        ("multiscale", {"scales": [1.0], "flip": True}),
    ):
        m = evaluate(Oracle(), loader, 3, InferenceSettings(mode=mode, **kw), progress=False)
        assert m.summary()["mIoU"] == 100.0, mode
        assert m.confusion.sum().item() == 2 * 7 * 8


def test_inference_settings_are_resolved_in_one_place() -> None:
    from ladseg.errors import LadsegError

    saved = {"mode": "multiscale", "scales": [0.5, 1.0], "flip": False, "scale_mode": "slide", "stride": None}
    s = InferenceSettings.resolve(saved, {"crop_size": [32, 48]}, flip=True, scales=None)
    assert s.kwargs() == {
        "crop_size": [32, 48], "stride": None, "scales": [0.5, 1.0], "flip": True,
        "scale_mode": "slide", "average": "probs", "rounding": "round",
    }  # fmt: skip
    assert s.describe() == "multiscale scales=[0.5, 1.0] +flip"
    assert InferenceSettings.resolve(saved, mode="whole").kwargs() == {}  # an option given wins
    assert InferenceSettings.resolve().kwargs() == {}  # a reference checkpoint: whole image
    with pytest.raises(LadsegError, match="needs a window"):
        InferenceSettings.resolve(mode="slide").kwargs()
    with pytest.raises(LadsegError, match="--stride 20 8 is larger than the sliding window 16 16"):
        InferenceSettings.resolve(mode="slide", crop_size=[16, 16], stride=[20, 8]).kwargs()
