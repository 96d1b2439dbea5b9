"""The LAD teacher method: loss terms, learning, two-path batching, evaluation inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny, toy_batch

from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError
from ladseg.losses.cwd import cwd_loss
from ladseg.methods import build_method
from ladseg.methods.label_encoding import fixed_codes
from ladseg.models.segmentor import resize_logits

IMAGENET = input_normalization("imagenet")


def _teacher(**params: object):  # noqa: ANN202
    return build_method(
        "lad_teacher", dict(params), make_tiny(in_channels=4), num_classes=3, data_normalization=IMAGENET
    )


def test_terms_add_up_with_reference_weights(batch: dict) -> None:
    method = _teacher()
    out = method(batch)
    assert set(out) == {"loss", "ce", "aux", "consistency"}
    assert out["consistency"].item() > 0  # two independent codings -> two different predictions
    expected = out["ce"] + 0.4 * out["aux"] + 5.0 * out["consistency"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["loss"].requires_grad and not out["ce"].requires_grad


def test_consistency_is_stop_gradient_both_ways(batch: dict) -> None:
    """The gradient equals that of CE(o1) + CE(o2) + D(o1 -> sg(o2)) + D(o2 -> sg(o1)), computed by hand."""
    method = _teacher(consistency_weight=1.0, aux_weight=0.0)
    params = list(method.network.parameters())
    torch.manual_seed(5)
    out = method(batch)
    grads = torch.autograd.grad(out["loss"], params, allow_unused=True)
    torch.manual_seed(5)  # the same codes and noise again
    e1, e2 = method.encoder(batch["mask"]), method.encoder(batch["mask"])
    o1 = method.network(torch.cat([batch["image"], e1], 1))
    o2 = method.network(torch.cat([batch["image"], e2], 1))
    ce = sum(
        F.cross_entropy(resize_logits(o.logits, (16, 16)), batch["mask"], ignore_index=255) for o in (o1, o2)
    )
    sg = cwd_loss(o1.logits, o2.logits.detach(), 4.0) + cwd_loss(o2.logits, o1.logits.detach(), 4.0)
    no_sg = cwd_loss(o1.logits, o2.logits, 4.0) + cwd_loss(o2.logits, o1.logits, 4.0)
    assert sg.item() == pytest.approx(out["consistency"].item(), rel=1e-5)
    ref = torch.autograd.grad(ce + sg, params, allow_unused=True, retain_graph=True)
    wrong = torch.autograd.grad(ce + no_sg, params, allow_unused=True)
    used = [(a, b, c) for a, b, c in zip(grads, ref, wrong, strict=True) if a is not None]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b, _ in used)
    assert not all(torch.allclose(a, c, atol=1e-6) for a, _, c in used)


def test_a_few_steps_lower_the_loss() -> None:
    method = _teacher()
    batch = toy_batch(n=2, size=16)
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)

    def loss_at_seeds() -> float:
        """Mean loss over 4 fixed draws of codes and noise (the same before and after training)."""
        values = []
        for seed in range(4):
            torch.manual_seed(100 + seed)
            values.append(method(batch)["loss"].item())
        return sum(values) / len(values)

    before = loss_at_seeds()
    for _ in range(25):
        opt.zero_grad()
        method(batch)["loss"].backward()
        opt.step()
    assert loss_at_seeds() < 0.6 * before


@pytest.mark.parametrize("consistency", ["cwd", "kl", "mse"])
def test_two_path_batch_equals_two_passes_without_bn(consistency: str) -> None:
    batch = toy_batch()
    model = make_tiny(in_channels=4, bn=False)
    one = build_method("lad_teacher", {"consistency": consistency}, model, 3, data_normalization=IMAGENET)
    two = build_method(
        "lad_teacher",
        {"consistency": consistency, "two_path_batch": True},
        model,
        3,
        data_normalization=IMAGENET,
    )
    torch.manual_seed(7)
    a = one(batch)
    ga = torch.autograd.grad(a["loss"], list(model.parameters()))
    torch.manual_seed(7)
    b = two(batch)
    gb = torch.autograd.grad(b["loss"], list(model.parameters()))
    for key in ("loss", "ce", "aux", "consistency"):
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-5, abs=1e-7)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_inference_inputs(batch: dict) -> None:
    method = _teacher()
    state = torch.get_rng_state()
    x = method.inference_input(batch)
    assert torch.equal(torch.get_rng_state(), state)  # evaluation never moves the training RNG
    assert x.shape == (2, 4, 16, 16)
    assert torch.equal(x[:, :3], batch["image"])
    codes = fixed_codes(3)[torch.where(batch["mask"] == 255, 3, batch["mask"])]
    assert (x[:, 3] - codes).abs().max() < 0.15  # fixed codes + N(0, 0.02) noise
    assert torch.equal(method.inference_input(batch), x)  # repeatable
    blind = method.inference_input_without_label(batch)
    assert torch.equal(blind[:, :3], batch["image"]) and not blind[:, 3].any()
    zero = _teacher(eval_label="none").inference_input(batch)
    assert torch.equal(zero, blind)


def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="in_channels: 4"):
        build_method("lad_teacher", {}, make_tiny(in_channels=3), 3, data_normalization=IMAGENET)
    with pytest.raises(ConfigError, match="in_channels: 8"):
        build_method(
            "lad_teacher",
            {"encoder": {"kind": "onehot"}},
            make_tiny(in_channels=4, num_classes=4),
            4,
            data_normalization=IMAGENET,
        )
    build_method(
        "lad_teacher",
        {"encoder": {"kind": "onehot"}},
        make_tiny(in_channels=7, num_classes=3),
        3,
        data_normalization=IMAGENET,
    )
    with pytest.raises(ConfigError, match="consistency"):
        _teacher(consistency="l1")
    with pytest.raises(ConfigError, match="eval_label"):
        _teacher(eval_label="gt")
    with pytest.raises(ConfigError, match="noize"):
        _teacher(encoder={"noize": 0.1})


def test_image_drop_blanks_whole_images_in_both_paths(batch: dict) -> None:
    """With image_drop 1 every image is blank: the network sees zeros + its label, in both paths."""
    seen: list[torch.Tensor] = []
    method = _teacher(image_drop=1.0)
    method.network.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    method(batch)
    assert len(seen) == 2 and all(not s[:, :3].any() and s[:, 3].abs().sum() > 0 for s in seen)
    seen.clear()
    _keep = _teacher(image_drop=0.0)
    _keep.network.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    _keep(batch)
    assert all(torch.equal(s[:, :3], batch["image"]) for s in seen)
    with pytest.raises(ConfigError, match="image_drop"):
        _teacher(image_drop=1.5)


def test_fixed_code_anneal_goes_from_fixed_to_random_codes_and_resumes(batch: dict) -> None:
    """Readable first: the first step reads only the fixed codes, the last annealed one none; the
    schedule's position is method state, so a resumed run continues it."""
    seen: list[torch.Tensor] = []
    method = _teacher(fixed_code_anneal=2, encoder={"noise": 0.0})
    method.network.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, 3:].detach().clone()))
    fixed = method.encoder(batch["mask"], fixed=True, noise=0.0)
    method.train()
    assert method.fixed_code_prob() == 1.0
    method(batch)
    assert len(seen) == 2 and all(torch.equal(s, fixed) for s in seen)
    assert method.fixed_code_prob() == 0.5
    resumed = _teacher(fixed_code_anneal=2, encoder={"noise": 0.0})
    resumed.load_state_dict(method.state_dict())
    assert int(resumed.anneal_step) == 1 and resumed.fixed_code_prob() == 0.5
    method(batch)
    seen.clear()
    method(batch)  # past the anneal: the reference's random codes, per image and path
    assert method.fixed_code_prob() == 0.0
    assert len(seen) == 2 and not any(torch.equal(s[i], fixed[i]) for s in seen for i in range(len(fixed)))
    method.eval()
    method(batch)  # evaluation passes do not move the schedule
    assert int(method.anneal_step) == 3
    assert "anneal_step" not in _teacher().state_dict()  # the paper's teacher: no extra state
    with pytest.raises(ConfigError, match="fixed_code_anneal"):
        _teacher(fixed_code_anneal=-1)
