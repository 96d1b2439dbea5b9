"""Run by ``torchrun`` in the DDP test: train, then dump this rank's weights and its validation.

Usage: ``torchrun --standalone --nproc_per_node=2 ddp_worker.py CONFIG OUT_DIR``.
"""

import sys
from pathlib import Path

import torch

from ladseg.engine.config import load_config
from ladseg.engine.dist import rank, world_size
from ladseg.engine.trainer import Trainer


def main() -> None:
    torch.set_num_threads(1)
    cfg_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    trainer = Trainer(load_config(cfg_path))
    try:
        result = trainer.fit()
        metrics = trainer.validate()  # the sharded evaluation, summed over ranks
        state = {k: v.detach().cpu() for k, v in trainer.method.state_dict().items()}
        torch.save(
            {"state": state, "confusion": metrics.confusion, "world": world_size(),
             "module": type(trainer.module).__name__, "iteration": result["iteration"],
             "compile": trainer.steps.mode},
            out / f"rank{rank()}.pt",
        )  # fmt: skip
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
