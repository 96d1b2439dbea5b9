"""Helpers for tests: the reference checkpoint key lists as random state dicts."""

from __future__ import annotations

import math
from pathlib import Path

import torch

REF_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "reference-checkpoints"


def parse_key_file(path: Path) -> dict[str, tuple[int, ...]]:
    """``name [d0, d1, ...]`` lines, ``#`` comments -> ordered name -> shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        dims = rest.strip().strip("[]").strip()
        shapes[name] = tuple(int(d) for d in dims.split(",")) if dims else ()
    return shapes


def declared_count(path: Path) -> int:
    """The 'N learnable+affine values' number in the file's header."""
    for line in path.read_text().splitlines():
        if "learnable+affine values" in line:
            return int(line.split("entries,")[1].split("learnable")[0].strip())
    raise ValueError(f"no count in {path}")


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Plausible random values: He-scaled convs, BN near identity, positive running variances."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            out[name] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            out[name] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif name.endswith("weight"):  # BN gamma
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:  # BN beta, conv bias
            out[name] = 0.1 * torch.randn(shape, generator=g)
    return out
