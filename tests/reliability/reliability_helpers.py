"""Helpers for the reliability tests: YAML configs, CLI runs, checkpoints, odd image files
(the tiny folder dataset is ``tests/tiny_data.py``'s, the ``tiny_root`` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tiny_data import tiny_config_dict

from ladseg.engine.checkpoint import save_checkpoint
from ladseg.models import build_model

REPO = Path(__file__).resolve().parents[2]


def config_dict(root: Path, work_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config with FCN-MobileNetV2 (head 8), 2 steps, a checkpoint every step, no validation;
    ``sections`` update the default sections."""
    raw = tiny_config_dict(
        root, work_dir, model={"backbone": "mobilenetv2", "head": {"channels": 8}},
        train={"iters": 2, "val_interval": 100, "log_interval": 1, "checkpoint_interval": 1},
    )  # fmt: skip
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def write_config(path: Path, root: Path, work_dir: Path, **sections: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config_dict(root, work_dir, **sections)))
    return path


def save_model_checkpoint(path: Path, name: str = "fcn", backbone: str = "mobilenetv2", k: int = 3) -> Path:
    """A ladseg checkpoint (model + meta) of a freshly built network."""
    model = build_model(name, backbone, k, head={"channels": 8})
    meta = {"spec": model.spec, "class_names": [f"c{i}" for i in range(k)], "normalize": "imagenet",
            "config": {}, "iteration": 0, "metrics": {}}  # fmt: skip
    return save_checkpoint(path, {"model": model.state_dict(), "meta": meta})


def cli_env() -> dict[str, str]:
    """Environment of a ``python -m ladseg`` child: one thread, the source tree importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH", "")]))
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ladseg", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def error_lines(err: str) -> list[str]:
    """The non-progress-bar lines of a CLI's stderr."""
    return [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "s/it]" not in line]


def cli_error(argv: list[str], capsys, code: int = 2) -> str:
    """Run ``ladseg ARGV`` in-process; it must exit ``code`` with one traceback-free error line,
    which is returned (without the ``ladseg CMD: error:`` prefix)."""
    from ladseg.cli import main

    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    prefix = f"ladseg {argv[0]}: error: "
    lines = [line for line in error_lines(err) if line.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0][len(prefix) :]


def write_png16_rgb(path: Path, rgb: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): H x W x 3 uint16 values."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def write_rotated_photo(path: Path, stored: np.ndarray, orientation: int = 6) -> Path:
    """A JPEG of ``stored`` (H x W x 3) carrying an EXIF orientation, as a phone writes a portrait
    (6: the viewer turns it 90 degrees clockwise, so it is displayed W x H)."""
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    return path
