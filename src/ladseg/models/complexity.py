"""Model size and cost: parameters and multiply-accumulates.

Units, since papers mix them: a MAC is one multiply-accumulate; FLOPs here are 2 x MACs
(PyTorch's ``FlopCounterMode`` convention). Most segmentation papers' "GFLOPs" (mmsegmentation,
fvcore) are really GMACs, so compare ``count_macs`` with those. Only convolutions and matrix
products are counted (BN, activations, pooling and resizing are left out, as those tools do).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Learnable values incl. BN affine, excluding buffers (running stats): the reference's count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 512, 512)) -> int:
    """FLOPs (2 per multiply-accumulate) of one inference forward, in eval mode (no aux head)."""
    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros(input_size, device=param.device if param is not None else "cpu")
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 512, 512)) -> int:
    """Multiply-accumulates of one inference forward (what papers usually call "FLOPs")."""
    return count_flops(model, input_size) // 2
