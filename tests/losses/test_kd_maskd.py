"""MasKD (Huang et al., ICLR 2023) against the authors' segmentation code on the same tensors, its properties,
and its two stages through the engine.

``_authors_*`` re-state, in the authors' own steps (hunto/MasKD ``segmentation/losses/maskd.py``: ``MaskModule``
``forward_mask`` / ``forward_train``, ``dice_coeff``, ``MasKDLoss.forward``; ``segmentation/train_mask_module.py``
and ``train_maskd.py`` for how they are combined), what their code computes; ladseg shares only the tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kd_loss_helpers import random_pair, seg, tiny_segmentor
from tiny_data import random_checkpoint, tiny_config
from torch import Tensor

from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError
from ladseg.losses import build_loss
from ladseg.methods import build_method
from ladseg.models.segmentor import SegOutput


# -- the authors' code, re-typed ---------------------------------------------------------------
def _authors_dice_coeff(inputs: Tensor) -> Tensor:
    pred = inputs[:, None, :, :]
    target = inputs[:, :, None, :]
    mask = pred.new_ones(pred.size(0), target.size(1), pred.size(2))
    mask[:, torch.arange(mask.size(1)), torch.arange(mask.size(2))] = 0
    a = torch.sum(pred * target, -1)
    b = torch.sum(pred * pred, -1) + 1e-12
    c = torch.sum(target * target, -1) + 1e-12
    d = (2 * a) / (b + c)
    return (d * mask).sum() / mask.sum()


def _authors_forward_mask(mask_token: Tensor, x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    attn = mask_token.expand(n, -1, -1) @ x.view(n, -1, h * w)
    return attn.sigmoid().view(n, -1, h, w)


def _authors_maskd(mask_token: Tensor, y_s: Tensor, y_t: Tensor) -> Tensor:
    mask = _authors_forward_mask(mask_token, y_t)
    masked_y_s = y_s.unsqueeze(1) * mask.unsqueeze(2)
    masked_y_t = y_t.unsqueeze(1) * mask.unsqueeze(2)
    square_loss = ((masked_y_s - masked_y_t) ** 2).sum((3, 4))
    square_loss = square_loss / (mask.sum((2, 3)).unsqueeze(-1) + 1e-5)
    return square_loss.mean() * 0.5


def _authors_ce(logits: Tensor, target: Tensor) -> Tensor:  # SegCrossEntropyLoss(ignore_index=-1)
    logits = F.interpolate(logits, target.shape[-2:], mode="bilinear", align_corners=True)
    return F.cross_entropy(logits, target, ignore_index=-1)


def _authors_token_stage(mask_token: Tensor, logits: Tensor, target: Tensor) -> Tensor:
    """``task_loss + mask_loss`` of train_mask_module.py without the teacher's aux CE (no token gradient)."""
    mask = _authors_forward_mask(mask_token, logits)
    out = (logits.unsqueeze(1) * mask.unsqueeze(2)).sum(1)
    return _authors_ce(out, target) + _authors_dice_coeff(mask.flatten(2))


def _ratio(a: Tensor, b: Tensor) -> float:
    return round(a.item() / b.item(), 3)


def _tokens_file(path: Path, t: int = 8, k: int = 4, seed: int = 0, key: str | None = "mask_token") -> Path:
    """Tokens as the authors save them (the MaskModule state dict), with the spread a trained one has."""
    tokens = torch.randn(t, k, generator=torch.Generator().manual_seed(seed))
    torch.save({key: tokens} if key else tokens, path)
    return path


# -- parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("aux_weight", [0.0, 0.4])
def test_equals_the_authors_loss_on_main_and_aux_logits(tmp_path: Path, aux_weight: float) -> None:
    path = _tokens_file(tmp_path / "tokens.pth", k=5)
    tokens = torch.load(path, weights_only=True)["mask_token"]
    g = torch.Generator().manual_seed(1)
    s, t, s_aux, t_aux = (torch.randn(2, 5, 9, 11, generator=g) * 3 for _ in range(4))
    loss = build_loss("maskd", 6, 6, 5, tokens=str(path), aux_weight=aux_weight)
    ours = loss(SegOutput(s, s, s_aux), SegOutput(t, t, t_aux), torch.zeros(2, 36, 44, dtype=torch.long))
    # train_maskd.py: kd = MasKD(s[0], t[0]) + 0.4 * MasKD(s[1], t[1]) for ResNet students
    theirs = _authors_maskd(tokens, s, t) + aux_weight * _authors_maskd(tokens, s_aux, t_aux)
    assert theirs.item() > 0 and _ratio(ours, theirs) == 1.000


def test_token_stage_equals_the_authors_loss_and_gradient(tmp_path: Path) -> None:
    net = tiny_segmentor(8, 5)
    m = build_method("maskd_tokens", {}, net, 5).train()
    with torch.no_grad():
        m.tokens.copy_(torch.randn(8, 5))
    image, mask = torch.randn(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32))
    mask[:, :3] = 255
    ours = m({"image": image, "mask": mask})["loss"]
    ours.backward()
    tokens = m.tokens.detach().clone().requires_grad_(True)
    with torch.no_grad():
        logits = net.eval()(image).logits
    theirs = _authors_token_stage(tokens, logits, mask.masked_fill(mask == 255, -1))
    theirs.backward()
    assert _ratio(ours, theirs) == 1.000
    torch.testing.assert_close(m.tokens.grad, tokens.grad, rtol=1e-4, atol=1e-7)


def test_dice_of_the_authors_on_masks_with_overlaps() -> None:
    from ladseg.losses.maskd import dice_diversity

    masks = torch.rand(3, 8, 6, 7)
    masks[:, 2] = masks[:, 5]  # identical pair: Dice 1
    assert _ratio(dice_diversity(masks), _authors_dice_coeff(masks.flatten(2))) == 1.000


# -- properties -------------------------------------------------------------------------------
def test_zero_for_a_perfect_student_and_gradients_only_into_the_student(tmp_path: Path) -> None:
    loss = build_loss("maskd", 6, 10, 4, tokens=str(_tokens_file(tmp_path / "t.pth")))
    logits, aux = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    same = loss(seg(logits, logits), SegOutput(logits.clone(), logits, aux.clone()), torch.zeros(2, 8, 8))
    assert same.item() == 0.0
    s, t, mask = random_pair()  # other widths and grids: the teacher's logits are resized to the student's
    s.aux_logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    t.aux_logits = torch.randn(2, 4, 16, 16, requires_grad=True)
    value = loss(s, t, mask)
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert t.logits.grad is None and t.aux_logits.grad is None and t.features.grad is None
    assert s.logits.grad.abs().sum() > 0 and s.aux_logits.grad.abs().sum() > 0
    assert list(loss.parameters()) == [] and not loss.tokens.requires_grad


def test_token_stage_trains_only_the_tokens_and_keeps_the_network_frozen() -> None:
    net = tiny_segmentor(8, 5)
    m = build_method("maskd_tokens", {}, net, 5).train()
    assert m.tokens.shape == (8, 5) and m.tokens.std().item() == pytest.approx(0.01, rel=0.5)
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 5, (2, 32, 32))}
    out = m(batch)
    out["loss"].backward()
    assert out["diversity"].item() > 0 and m.tokens.grad.abs().sum() > 0
    assert [n for n, p in m.named_parameters() if p.grad is not None] == ["tokens"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics too


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"aux_weight": 0.4}, "aux_weight"),
        ({"num_tokens": 0}, "num_tokens"),
        ({"init_std": 0.0}, "init_std"),
    ],
)
def test_token_stage_bad_values_are_config_errors(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method("maskd_tokens", params, tiny_segmentor(8, 5), 5)


def test_missing_unreadable_or_misfit_tokens_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the receptive tokens"):
        build_loss("maskd", 6, 6, 4)
    with pytest.raises(ConfigError, match="not found"):
        build_loss("maskd", 6, 6, 4, tokens=str(tmp_path / "none.pth"))
    with pytest.raises(ConfigError, match=r"shape \(8, 19\).*expected T x 4"):
        build_loss("maskd", 6, 6, 4, tokens=str(_tokens_file(tmp_path / "city.pth", k=19)))
    torch.save({"model": {}, "meta": {"format": 1}}, tmp_path / "best.pth")
    with pytest.raises(ConfigError, match="without its resume state"):
        build_loss("maskd", 6, 6, 4, tokens=str(tmp_path / "best.pth"))
    other = {"model": {}, "meta": {"config": {"method": {"name": "distill"}}}, "state": {"method": {}}}
    torch.save(other, tmp_path / "kd.pth")
    with pytest.raises(ConfigError, match="method 'distill', not of the maskd_tokens"):
        build_loss("maskd", 6, 6, 4, tokens=str(tmp_path / "kd.pth"))
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ConfigError, match="cannot be read"):
        build_loss("maskd", 6, 6, 4, tokens=str(tmp_path / "text.pth"))
    bare = build_loss("maskd", 6, 6, 4, tokens=str(_tokens_file(tmp_path / "bare.pth", key=None)))
    assert bare.tokens.shape == (8, 4)


def test_distill_reads_the_teacher_aux_logits_and_exports_the_student_only(tmp_path: Path) -> None:
    path = _tokens_file(tmp_path / "t.pth", k=5)
    m = build_method(
        "distill",
        {"aux_weight": 0.4, "kd_losses": [{"name": "maskd", "tokens": str(path)}]},
        tiny_segmentor(8, 5),
        5,
        teacher=tiny_segmentor(12, 5, stride2=1),
        data_normalization=input_normalization("imagenet"),
    ).train()
    assert m.loss_modules[0].uses_teacher_aux
    out = m({"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 5, (2, 32, 32))})
    out["loss"].backward()
    assert out["kd_maskd"].item() > 0 and all(p.grad is None for p in m.teacher.parameters())
    assert "loss_modules.0.tokens" in m.state_dict()  # a resumed run keeps the tokens it started with
    assert m.export_model().state_dict().keys() == m.network.state_dict().keys()


# -- the two stages through the engine --------------------------------------------------------
def test_token_stage_then_distillation_through_the_engine(tiny_root: Path, tmp_path: Path) -> None:
    from ladseg.engine.checkpoint import load_checkpoint
    from ladseg.engine.trainer import train

    teacher = random_checkpoint(tmp_path / "teacher.pth", name="fcn")
    short = {"iters": 2, "val_interval": 2, "checkpoint_interval": 2}
    stage1 = tiny_config(
        tiny_root,
        tmp_path / "tokens",
        method={"name": "maskd_tokens"},
        optim={"lr": 0.1, "weight_decay": 1e-3},
        train={**short, "init_checkpoint": str(teacher)},
    )
    train(stage1)
    last = load_checkpoint(tmp_path / "tokens" / "last.pth")
    tokens = last["state"]["method"]["tokens"]
    assert tokens.shape == (8, 3)
    frozen = load_checkpoint(teacher)["model"]
    assert all(torch.equal(frozen[k], v) for k, v in last["model"].items())  # the network did not move

    stage2 = tiny_config(
        tiny_root,
        tmp_path / "kd",
        method={"name": "distill", "aux_weight": 0.4,
                "kd_losses": [{"name": "maskd", "tokens": str(tmp_path / "tokens" / "last.pth")}]},
        teacher={"checkpoint": str(teacher)},
        train=short,
    )  # fmt: skip
    train(stage2)
    kd = load_checkpoint(tmp_path / "kd" / "last.pth")
    assert torch.equal(kd["state"]["method"]["loss_modules.0.tokens"], tokens)
    assert not any("loss_modules" in k or "tokens" in k for k in kd["model"])


# -- the shipped stage pairs ------------------------------------------------------------------
CONFIGS = Path(__file__).parents[2] / "configs"
PAIRS = [
    ("cityscapes/maskd_tokens_deeplabv3_r101_10k_cityscapes_512x1024.yaml",
     "cityscapes/kd_maskd_deeplabv3_r101_r18_40k_cityscapes_512x1024.yaml", 10000),
    ("camvid/maskd_tokens_effl2_camvid_half.yaml", "camvid/kd_maskd_effl2_stdc1_camvid_half.yaml", 1000),
]  # fmt: skip


@pytest.mark.parametrize(("tokens_config", "kd_config", "iters"), PAIRS, ids=lambda v: str(v).split("/")[0])
def test_token_stage_runs_on_the_teacher_of_its_distillation_config(
    tokens_config: str, kd_config: str, iters: int
) -> None:
    from ladseg.engine.config import load_config

    stage, kd = load_config(CONFIGS / tokens_config), load_config(CONFIGS / kd_config)
    assert stage.method_name == "maskd_tokens" and stage.train.init_checkpoint == "required"
    teacher = kd.teacher.model
    assert (stage.model.name, stage.model.backbone, stage.model.output_stride) == (
        teacher.name, teacher.backbone, teacher.output_stride,
    )  # fmt: skip
    o = stage.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.poly_power, o.warmup_iters) == (
        "sgd", 0.1, 0.9, 1e-3, 0.9, 0,
    )  # fmt: skip
    assert stage.train.iters == iters and stage.train.ema_decay is None and o.head_lr_mult == 1.0
    (spec,) = kd.method.kd_losses
    assert (spec.name, spec.weight, spec.aux_weight, spec.tokens) == ("maskd", 1.0, 0.4, None)
