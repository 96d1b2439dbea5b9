import pickle
from pathlib import Path

import pytest
import torch

from ladseg.engine.checkpoint import (
    build_model_from_checkpoint,
    load_checkpoint,
    load_weights_into,
    save_checkpoint,
)
from ladseg.errors import CheckpointError
from ladseg.models import build_model


def tiny_model(k: int = 3, name: str = "fcn"):
    return build_model(name, "resnet18", k, head={"channels": 8})


def payload(model, iteration: int = 0) -> dict:
    return {"model": model.state_dict(), "meta": {"spec": model.spec, "class_names": ["a", "b", "c"],
            "normalize": "imagenet", "config": {}, "iteration": iteration, "metrics": {"mIoU": 1.0}}}  # fmt: skip


def test_atomic_write_keeps_previous(tmp_path: Path) -> None:
    path = tmp_path / "run" / "last.pth"
    save_checkpoint(path, {"x": torch.tensor([1])})
    save_checkpoint(path, {"x": torch.tensor([2])})
    assert load_checkpoint(path)["x"].item() == 2
    assert load_checkpoint(path.with_name("last.pth.prev"))["x"].item() == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pth", "last.pth.prev"]  # no temp left


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"x": torch.tensor([1])})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, {"x": lambda: 0})  # not picklable
    assert load_checkpoint(path)["x"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


class Evil:
    """Unpickling this calls a global function: what weights_only=True must refuse."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_rebuild_from_checkpoint_gives_identical_outputs(tmp_path: Path) -> None:
    model = tiny_model().eval()
    save_checkpoint(tmp_path / "m.pth", payload(model, iteration=5))
    rebuilt, meta = build_model_from_checkpoint(tmp_path / "m.pth")
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x).logits, model(x).logits)
    assert meta["iteration"] == 5 and meta["class_names"] == ["a", "b", "c"]


def test_a_state_dict_saved_from_a_compile_wrapper_loads_into_an_eager_model(tmp_path: Path) -> None:
    model = tiny_model().eval()
    wrapped = torch.compile(model)  # not run: the wrapper's keys are all that matters here
    state = wrapped.state_dict()
    assert all(k.startswith("_orig_mod.") for k in state)
    save_checkpoint(tmp_path / "m.pth", {**payload(model), "model": state})
    rebuilt, _ = build_model_from_checkpoint(tmp_path / "m.pth")
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x).logits, model(x).logits, rtol=0, atol=0)


def test_mismatched_architecture_or_classes_is_explained(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.pth", payload(tiny_model(3)))
    with pytest.raises(CheckpointError, match="num_classes: checkpoint 3 vs model 5"):
        load_weights_into(tiny_model(5), tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="name: checkpoint 'fcn' vs model 'pspnet'"):
        load_weights_into(tiny_model(3, "pspnet"), tmp_path / "m.pth")
    # without a spec to compare, the first mismatched keys are named
    bad = payload(tiny_model(3))
    bad["meta"]["spec"] = None
    save_checkpoint(tmp_path / "nospec.pth", bad)
    with pytest.raises(CheckpointError, match="shape mismatch.*classifier"):
        load_weights_into(tiny_model(5), tmp_path / "nospec.pth")


REF_KEYS = (
    Path(__file__).resolve().parents[3]
    / "shared/reference/reference-checkpoints/deeplabv3_resnet18_voc21_lad.txt"
)


@pytest.mark.skipif(not REF_KEYS.is_file(), reason="reference key list not available")
def test_reference_checkpoint_is_imported(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    state = {}
    for line in REF_KEYS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, dims = line.partition(" ")
        shape = tuple(int(d) for d in dims.strip().strip("[]").split(",") if d.strip())
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = torch.ones(shape)
        else:
            state[name] = torch.randn(shape, generator=g) * 0.01
    torch.save(state, tmp_path / "ref.pth")
    model, meta = build_model_from_checkpoint(tmp_path / "ref.pth")
    assert (
        meta["normalize"] == "reference_bgr"
        and model.num_classes == 21
        and meta["spec"]["name"] == "deeplabv3"
    )
    assert model.in_channels == 4  # image + LAD label channel
    with pytest.raises(CheckpointError, match="in_channels: checkpoint 4 vs model 3"):
        load_weights_into(build_model("deeplabv3", "resnet18", 21), tmp_path / "ref.pth")
    target = build_model("deeplabv3", "resnet18", 21, in_channels=4)
    load_weights_into(target, tmp_path / "ref.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
