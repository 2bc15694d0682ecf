"""Numeric precision by hardware: ``hardware.precision: auto`` and the bf16 prediction path.

Prediction runs a model *cast* to bf16 (or fp16), not under autocast: on a CPU with AVX512-bf16/AMX a cast model
predicts about 2.3x faster than fp32 and a third faster than autocast (``experiments/speed.py`` measures
it). Training keeps fp32 master weights under Lightning's mixed precision. On CPUs without bf16 units autocast runs
several times *slower* than fp32, so ``auto`` only picks bf16 where the hardware has it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from alpaca_lightning.errors import AlpacaError

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Lightning's mixed precisions and the dtype their prediction runs in (a cast model); "-true" ones need no cast.
PREDICT_DTYPES = {"bf16-mixed": "bfloat16", "16-mixed": "float16"}


@dataclass(frozen=True)
class PrecisionPlan:
    train: str  # a Lightning precision for every fit
    predict_dtype: str  # the dtype a model is cast to for prediction (float32: no cast)
    reason: str  # why, for run_info.json and the console

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX512-bf16 or AMX-bf16 in the CPU flags (Linux); other systems are assumed not to have them."""
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def gpu_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def plan_precision(precision: str | int, accelerator: str, cpu_bf16: bool | None = None,
                   gpu_bf16: bool | None = None) -> PrecisionPlan:
    """``auto`` -> bf16-mixed training and bf16 prediction where the device has bf16 units, else fp32. Any other
    value is Lightning's precision, used as given, with prediction cast to its low-precision dtype."""
    precision = str(precision)
    if precision != "auto":
        dtype = PREDICT_DTYPES.get(precision, "float32")
        return PrecisionPlan(precision, dtype, f"hardware.precision={precision} (as configured)")
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        has_bf16 = gpu_has_bf16() if gpu_bf16 is None else gpu_bf16
        where = "the GPU supports bf16" if has_bf16 else "the GPU has no bf16 (use 16-mixed explicitly)"
    elif accelerator == "cpu":
        has_bf16 = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
        where = ("the CPU has AVX512-bf16/AMX" if has_bf16
                 else "the CPU has no bf16 units (autocast would be slower than fp32)")
    else:
        raise AlpacaError(
            f"hardware.precision=auto knows cpu and gpu accelerators, not '{accelerator}'. Set hardware.precision "
            f"explicitly, e.g. hardware.precision=32-true."
        )
    if has_bf16:
        return PrecisionPlan("bf16-mixed", "bfloat16", f"auto: {where}")
    return PrecisionPlan("32-true", "float32", f"auto: {where}")


WeightStore = dict[torch.Tensor, torch.Tensor]  # parameter or buffer -> its fp32 data


def _floating_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    # parameters() and buffers() skip repeats, so a tied weight (MLM decoder = embeddings) is cast and restored once
    tensors = [*module.parameters(), *module.buffers()]
    return [tensor for tensor in tensors if tensor.is_floating_point()]


def cast_weights(module: torch.nn.Module, dtype: torch.dtype) -> WeightStore | None:
    """Cast the module's floating-point weights to ``dtype``; returns the fp32 data for ``restore_weights`` (a later
    fit or save must not see rounded weights), or None when nothing was cast.

    Each tensor's ``.data`` is swapped for a cast copy and the fp32 original is kept aside, not cloned: one pass
    over the weights instead of four (clone, cast, cast back, load), and the restore is exact by construction.
    Lightning's predict hooks run under inference mode; weights cast there would become inference tensors that a
    later fit cannot train, hence the local ``inference_mode(False)``."""
    if dtype == torch.float32:
        return None
    saved: WeightStore = {}
    with torch.inference_mode(False), torch.no_grad():
        for tensor in _floating_tensors(module):
            saved[tensor] = tensor.data
            tensor.data = tensor.data.to(dtype)
    return saved


def restore_weights(module: torch.nn.Module, saved: WeightStore | None) -> None:
    if saved is None:
        return
    with torch.inference_mode(False), torch.no_grad():
        for tensor, original in saved.items():
            tensor.data = original


class PredictionDtype(Callback):
    """Casts the LightningModule to the plan's prediction dtype for one ``trainer.predict`` and restores it, also
    when prediction fails."""

    def __init__(self, dtype: str) -> None:
        self.dtype = getattr(torch, dtype)
        self._saved: WeightStore | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved = cast_weights(pl_module, self.dtype)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restore_weights(pl_module, self._saved)
        self._saved = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.on_predict_end(trainer, pl_module)
