"""Optimizer and learning-rate schedule shared by every LightningModule here."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")


def parameter_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float,
    lr_scale: Callable[[str], float] | None = None,
) -> list[dict]:
    """The usual transformer split: no weight decay on biases and LayerNorm weights. ``lr_scale(name)`` (layer-wise
    decay) splits further, one group per factor on the optimizer's learning rate (``configure`` applies it)."""
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {(1.0, True): [], (1.0, False): []}
    for name, param in named_parameters:
        if param.requires_grad:
            scale = lr_scale(name) if lr_scale is not None else 1.0
            groups.setdefault((scale, not name.endswith(NO_DECAY)), []).append(param)
    out = []
    for (scale, decays), params in groups.items():
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if scale != 1.0:
            out.append({**group, "lr_scale": scale})
        else:
            out.append(group)  # the two plain groups, always there (empty or not), as before the scales existed
    return out


def apply_lr_scales(optimizer: torch.optim.Optimizer) -> None:
    """Each group's learning rate times its ``lr_scale``, before a scheduler records the initial rates."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)


def linear_warmup_decay(
    optimizer: torch.optim.Optimizer, num_training_steps: int, warmup_ratio: float = 0.1
) -> LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to zero."""
    warmup = int(round(warmup_ratio * num_training_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (num_training_steps - step) / max(1, num_training_steps - warmup))

    return LambdaLR(optimizer, factor)


def constant(optimizer: torch.optim.Optimizer, num_training_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: 1.0)


def clip_grad_norm(parameters: list[torch.nn.Parameter], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, which scales the gradients by min(1, max_norm / (norm + 1e-6)), without
    the scaling when that factor is 1: it changes no gradient, yet is a pass over all of them. That is most steps
    once a fit has converged (round 0's later epochs on a few labels); a first epoch clips nearly every step (63 of
    64 in experiments/speed.py). The test needs the norm on the host, so on other devices (where it would wait for
    the device) torch's function runs as it is."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if any(g.device.type != "cpu" for g in grads):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    total_norm = torch.nn.utils.get_total_norm(grads)
    if float(max_norm / (total_norm + 1e-6)) < 1.0:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total_norm)


FUSED_KERNELS = (torch.optim.AdamW, torch.optim.Adam)
FUSED_DEVICES = ("cpu", "cuda")


def with_fused_kernel(
    optimizer_factory: Callable[..., torch.optim.Optimizer], device: torch.device, precision: str = "32-true"
) -> Callable[..., torch.optim.Optimizer]:
    """Adam(W) with ``fused=True`` where the device has the kernel, unless the config chose ``fused`` or
    ``foreach`` itself. torch's default on CPU is a Python loop over parameters: about half of a small model's
    training step here; the fused kernel does the same update in one pass. Not under 16-mixed: Lightning cannot
    clip the gradients that a fused optimizer unscales itself."""
    func = getattr(optimizer_factory, "func", optimizer_factory)
    chosen = getattr(optimizer_factory, "keywords", {})
    if (func not in FUSED_KERNELS or "fused" in chosen or "foreach" in chosen or device.type not in FUSED_DEVICES
            or precision == "16-mixed"):
        return optimizer_factory
    return functools.partial(optimizer_factory, fused=True)


def configure(
    module: torch.nn.Module,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., LambdaLR] | None,
    weight_decay: float,
    num_training_steps: int,
    precision: str = "32-true",
    lr_scale: Callable[[str], float] | None = None,
) -> dict:
    """What ``LightningModule.configure_optimizers`` returns: a per-step schedule over the whole fit."""
    device = next(module.parameters()).device
    factory = with_fused_kernel(optimizer_factory, device, precision)
    optimizer = factory(parameter_groups(module.named_parameters(), weight_decay, lr_scale))
    apply_lr_scales(optimizer)
    if scheduler_factory is None:
        return {"optimizer": optimizer}
    scheduler = scheduler_factory(optimizer, num_training_steps=max(1, int(num_training_steps)))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
