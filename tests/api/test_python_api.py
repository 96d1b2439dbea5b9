"""The Python API (``ladseg.load / train / evaluate``) and the README's snippet, run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ladseg
from ladseg.errors import ConfigError, DatasetError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The fenced Python block of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the README snippet in a fresh folder; its run folder holds the checkpoint the tests load."""
    where = tmp_path_factory.mktemp("readme")
    (where / "snippet.py").write_text(readme_snippet(), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=where, capture_output=True, text=True, timeout=900,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = result.stdout.strip().splitlines()[-1]
    assert shapes.startswith("(90, 120) ("), shapes  # class map and probabilities at the input's size
    return where / "work_dirs" / "api_example" / "last.pth"


def test_import_ladseg_stays_light() -> None:
    code = "import sys, ladseg; assert 'torch' not in sys.modules; print(ladseg.load.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ladseg.api"


def test_predict_takes_a_path_a_pil_image_and_an_array_alike(trained: Path, tmp_path: Path) -> None:
    model = ladseg.load(trained, device="cpu")
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "x.png")
    from_array = model.predict(array)
    assert from_array.shape == (50, 70) and from_array.dtype == np.uint8
    assert np.array_equal(model.predict(Image.fromarray(array)), from_array)
    assert np.array_equal(model.predict(tmp_path / "x.png"), from_array)
    classes, probs = model.predict(array, probabilities=True)
    assert probs.shape == (model.num_classes, 50, 70)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(0), classes)
    with pytest.raises(DatasetError, match="uint8"):
        model.predict(array.astype(np.float32))


def test_load_follows_given_inference_options(trained: Path) -> None:
    model = ladseg.load(trained, device="cpu", mode="slide", crop_size=[32, 32])
    assert model.settings.mode == "slide" and model.kwargs["crop_size"] == [32, 32]
    assert model.predict(np.zeros((40, 48, 3), dtype=np.uint8)).shape == (40, 48)


def test_evaluate_matches_the_saved_validation(trained: Path) -> None:
    import torch

    best = trained.parent / "best.pth"  # written by the validation at the last iteration
    metrics = ladseg.evaluate(
        best, trained.parent / "config.yaml", run__device="cpu", data={"num_workers": 0}
    )
    saved = torch.load(best, map_location="cpu", weights_only=True)["meta"]["metrics"]
    assert metrics.summary()["mIoU"] == pytest.approx(saved["mIoU"], abs=1e-4)


def test_train_overrides_are_checked_like_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'train.iters': expected int"):
        ladseg.train({"run": {"work_dir": str(tmp_path / "r")}}, train__iters="many")
    assert not (tmp_path / "r").exists()
