"""The adversarial (holistic) term of CIRKD's KD runs: hinge losses, spectral norm, discriminator shape, config.

``_cirkd_*`` re-state CIRKD's ``CriterionAdvForG`` / ``CriterionAdv`` ('hinge') and SAGAN's power
iteration in plain torch, on the same tensors as ladseg's code.
"""

from __future__ import annotations

import copy

import pytest
import torch
from kd_loss_helpers import seg

from ladseg.engine.config import load_config
from ladseg.errors import ConfigError
from ladseg.losses import LOSSES, build_loss
from ladseg.losses.adversarial import Discriminator, SNConv2d, discriminator_hinge, generator_hinge


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float(a.detach() / b.detach()), 3)


def _cirkd_g(d_out_s: torch.Tensor) -> torch.Tensor:
    return -d_out_s.mean()


def _cirkd_d(d_out_s: torch.Tensor, d_out_t: torch.Tensor) -> torch.Tensor:
    return torch.nn.ReLU()(1.0 - d_out_t).mean() + torch.nn.ReLU()(1.0 + d_out_s).mean()


def test_hinge_losses_match_cirkd() -> None:
    d_s, d_t = torch.randn(2, 1, 3, 5) * 2, torch.randn(2, 1, 3, 5) * 2
    assert _ratio(generator_hinge(d_s), _cirkd_g(d_s)) == 1.000
    assert _ratio(discriminator_hinge(d_s, d_t), _cirkd_d(d_s, d_t)) == 1.000


def test_the_loss_terms_match_cirkd_with_their_weights() -> None:
    K = 4
    loss = build_loss("adversarial", 8, 8, K)
    assert LOSSES.get("adversarial").default_weight == 0.001 and loss.d_weight == 0.1
    assert loss.d_lr == 4e-4 and loss.d_betas == (0.9, 0.99)
    s, t = torch.randn(2, K, 64, 64), torch.randn(2, K, 64, 64)
    ref_d = copy.deepcopy(loss.discriminator)  # same weights and power-iteration vectors
    ours_g = loss(seg(s, s), seg(t, t), torch.zeros(2, 64, 64, dtype=torch.long))
    assert _ratio(ours_g, _cirkd_g(ref_d(s))) == 1.000
    ours_d = loss.discriminator_loss(s, t)  # CIRKD's order: D(student), then D(teacher)
    ref = 0.1 * _cirkd_d(ref_d(s), ref_d(t))
    assert _ratio(ours_d, ref) == 1.000


def _cirkd_power_iteration(
    w: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = w.view(w.shape[0], -1)
    v = m.t().mv(u)
    v = v / (v.norm() + 1e-12)
    u = m.mv(v)
    u = u / (u.norm() + 1e-12)
    return u, v, u.dot(m.mv(v))


def test_spectral_norm_follows_sagan_and_converges_to_the_top_singular_value() -> None:
    conv = SNConv2d(3, 8, 4, 2, 1)
    u0 = conv.u.clone()
    x = torch.randn(1, 3, 16, 16)
    y = conv(x)
    u, v, sigma = _cirkd_power_iteration(conv.weight.detach(), u0)
    torch.testing.assert_close(conv.u, u)
    torch.testing.assert_close(conv.v, v)
    ref = torch.nn.functional.conv2d(x, conv.weight / sigma, conv.bias, 2, 1)
    torch.testing.assert_close(y, ref)
    for _ in range(100):
        conv(x)
    top = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    _, _, sigma = _cirkd_power_iteration(conv.weight.detach(), conv.u)
    assert float(sigma / top) == pytest.approx(1.0, abs=1e-4)
    assert {"u", "v"} <= set(conv.state_dict())  # saved with the method state


def test_discriminator_shapes() -> None:
    d = Discriminator(19, width=16)
    assert d(torch.randn(2, 19, 64, 128)).shape == (2, 1, 1, 5)  # CIRKD's 512 x 1024 crops at 1/8
    assert d(torch.randn(2, 19, 8, 8)).shape == (2, 1, 1, 1)  # smaller maps are up-sampled to 64


def test_config_typos_and_values_are_errors() -> None:
    with pytest.raises(ConfigError, match="d_wieght"):
        build_loss("adversarial", 8, 8, 3, d_wieght=0.1)
    with pytest.raises(ConfigError, match="d_lr"):
        build_loss("adversarial", 8, 8, 3, d_lr=0.0)
    with pytest.raises(ConfigError, match="d_weight"):
        build_loss("adversarial", 8, 8, 3, d_weight=-1.0)
    with pytest.raises(ConfigError, match="d_beta"):
        build_loss("adversarial", 8, 8, 3, d_beta2=1.0)


@pytest.mark.parametrize("method", ["skd", "ifvd", "cwd"])
@pytest.mark.parametrize(
    "dataset",
    [
        "cityscapes/kd_{}_deeplabv3_r101_r18_40k_cityscapes_512x1024",
        "voc/kd_{}_deeplabv3_r101_r18_40k_voc_512",
    ],
)
def test_kd_configs_add_the_term_as_cirkd(method: str, dataset: str) -> None:
    cfg = load_config(f"configs/{dataset.format(method)}.yaml")
    adv = [spec for spec in cfg.method.kd_losses if spec.name == "adversarial"]
    assert len(adv) == 1 and adv[0].weight == 0.001 and adv[0].d_weight == 0.1
    assert adv[0].d_lr == 4e-4 and (adv[0].d_beta1, adv[0].d_beta2) == (0.9, 0.99)
