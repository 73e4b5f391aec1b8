"""Parameter and multiply-add counts, the two complexity measures of Tables 1 and 6."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN affine included, running statistics not), as in Table 6."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, image_size: int) -> int:
    """Forward multiply-adds for one image (torch's FLOP counter counts 2 per multiply-add).

    Like the paper, only convolutions and fully-connected layers count (BN, ReLU, pooling and
    the shortcut additions are negligible and not counted).
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
