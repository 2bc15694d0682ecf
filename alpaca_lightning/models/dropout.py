"""Dropout whose mask comes from uniform numbers on a CPU.

torch's CPU dropout draws its mask with ``bernoulli_``, which is slower there than drawing uniform numbers and
comparing them with ``p``; with MiniLM's short sentences at batch 16 the masks are a few percent of a training step.
The mask has the same distribution (each value kept with probability 1 - p, scaled by 1 / (1 - p)); only the random
stream differs. Other devices keep torch's own fused kernel.
"""

from __future__ import annotations

import torch


class UniformMaskDropout(torch.nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or not x.is_floating_point():
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        # uniform numbers in float32 (a bf16 draw under autocast would be too coarse), the mask in x's dtype
        scale = torch.rand(x.shape, device=x.device).ge_(self.p).to(x.dtype).div_(1.0 - self.p)
        return x.mul_(scale) if self.inplace else x * scale


def use_uniform_mask_dropout(module: torch.nn.Module) -> int:
    """Swap every plain ``nn.Dropout`` inside ``module`` for ``UniformMaskDropout``; returns how many."""
    swapped = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, UniformMaskDropout(child.p, child.inplace))
                swapped += 1
    return swapped
