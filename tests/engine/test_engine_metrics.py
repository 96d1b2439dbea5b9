import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from ladseg.engine.metrics import ConfusionMatrix


def random_split(k: int, seed: int, absent: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(3):
        target = torch.randint(0, k, (2, 17, 13), generator=g)
        pred = torch.where(
            torch.rand(target.shape, generator=g) < 0.6,
            target,
            torch.randint(0, k, target.shape, generator=g),
        )
        target[torch.rand(target.shape, generator=g) < 0.1] = 255
        if absent is not None:  # a class in neither ground truth nor prediction
            target[target == absent] = 0
            pred[pred == absent] = 0
        batches.append((pred, target))
    return batches


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torchmetrics(seed: int) -> None:
    k = 5
    cm = ConfusionMatrix(k)
    jac_none = MulticlassJaccardIndex(k, average=None, ignore_index=255)
    jac_macro = MulticlassJaccardIndex(k, average="macro", ignore_index=255)
    acc_none = MulticlassAccuracy(k, average=None, ignore_index=255)
    acc_micro = MulticlassAccuracy(k, average="micro", ignore_index=255)
    for pred, target in random_split(k, seed):
        cm.update(pred, target)
        for m in (jac_none, jac_macro, acc_none, acc_micro):
            m.update(pred, target)
    metrics = cm.compute()
    torch.testing.assert_close(metrics.iou.float(), jac_none.compute().float())
    assert metrics.miou == pytest.approx(jac_macro.compute().item(), abs=1e-6)
    torch.testing.assert_close(metrics.acc.float(), acc_none.compute().float())
    assert metrics.aacc == pytest.approx(acc_micro.compute().item(), abs=1e-6)


def test_absent_class_is_nan_and_excluded_from_mean() -> None:
    k = 4
    cm = ConfusionMatrix(k)
    for pred, target in random_split(k, 3, absent=2):
        cm.update(pred, target)
    m = cm.compute(["a", "b", "c", "d"])
    assert math.isnan(m.iou[2].item()) and math.isnan(m.acc[2].item())
    present = [i for i in range(k) if i != 2]
    assert m.miou == pytest.approx(m.iou[present].mean().item())
    assert m.to_dict()["IoU"]["c"] is None
    table = m.table()
    assert "n/a" in table and "mIoU" in table and table.splitlines()[2].startswith("a ")


def test_ignore_index_and_perfect_prediction() -> None:
    cm = ConfusionMatrix(3)
    target = torch.tensor([[0, 1, 2, 255]])
    cm.update(target.clone().clamp(max=2), target)
    m = cm.compute()
    assert cm.mat.sum().item() == 3
    assert m.summary() == {"aAcc": 100.0, "mIoU": 100.0, "mAcc": 100.0}
