"""The adaptive network: how much of the encoder trains, and how fast, per layer (options of ``model.classifier``).

From the few-sample fine-tuning literature (Howard & Ruder, 2018; Zhang et al., 2021, "Revisiting Few-sample BERT
Fine-tuning"); every option is off by default:

- ``llrd: xi``: layer-wise learning-rate decay. The head, the feature parameters and the top encoder layer get the
  optimizer's learning rate; each layer below gets ``xi`` times the one above it, the embeddings ``xi ** L``.
- ``gradual_unfreezing: n``: the encoder starts frozen (head and feature parameters train); every n epochs the next
  layer down starts training, the embeddings last. Each fit restarts the schedule (every round's student). Frozen
  layers still compute gradients (DDP needs them) that are dropped before the optimizer step.
- ``reinit_layers: k``: the top k layers start from fresh random weights. Applied once, when a classifier is built on
  a plain encoder; a folder that a classifier saved (a probe stage, a round) already carries the result.
- ``lora: {r, alpha, dropout, target_modules}``: low-rank adapters through ``peft`` train instead of the encoder;
  a saved classifier merges them into the weights, so every folder stays a plain ``from_pretrained`` encoder.

"Depth" below counts encoder layers down from the top: 0 for the top layer, L - 1 for the lowest, L for the
embeddings.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence

import torch

from alpaca_lightning.errors import AlpacaError

LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def encoder_depth(parameter_name: str, num_layers: int) -> int:
    """A parameter's depth from its name (``encoder.layer.3.`` and the like, also inside a peft wrapper).
    Anything else of the encoder is the embeddings when its name says so, else above the layers (depth 0)."""
    match = LAYER_INDEX.search(f".{parameter_name}")
    if match:
        return num_layers - 1 - int(match.group(1))
    return num_layers if "embed" in parameter_name else 0


def llrd_scale(parameter_name: str, num_layers: int, decay: float) -> float:
    """The factor on the optimizer's learning rate for one encoder parameter."""
    return decay ** encoder_depth(parameter_name, num_layers)


def check_options(num_layers: int, llrd: float | None, gradual_unfreezing: int | None, reinit_layers: int,
                  lora: dict | None) -> None:
    if llrd is not None and not 0 < llrd <= 1:
        raise AlpacaError(f"model.classifier.llrd={llrd}: the per-layer decay must be in (0, 1], e.g. 0.9; "
                          f"null turns it off.")
    if gradual_unfreezing is not None and gradual_unfreezing < 1:
        raise AlpacaError(f"model.classifier.gradual_unfreezing={gradual_unfreezing}: give the epochs between "
                          f"unfreezing steps (>= 1), or null to train every layer from the start.")
    if not 0 <= reinit_layers <= num_layers:
        raise AlpacaError(f"model.classifier.reinit_layers={reinit_layers}, but the encoder has {num_layers} "
                          f"layers: choose 0 to {num_layers}.")
    if lora is not None and reinit_layers:
        raise AlpacaError("model.classifier.reinit_layers with model.classifier.lora would leave the "
                          "re-initialised layers frozen at random weights; use one of them.")


def encoder_layers(model: torch.nn.Module, num_layers: int) -> torch.nn.ModuleList:
    """The encoder's stack of transformer layers: the ModuleList of exactly ``num_hidden_layers`` modules."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return module
    raise AlpacaError(f"Cannot find the {num_layers} transformer layers of {type(model).__name__} "
                      f"(model.classifier.reinit_layers needs them).")


def reinit_top_layers(model: torch.nn.Module, k: int, num_layers: int) -> None:
    """Fresh weights for the top ``k`` layers, drawn as the model's own initialisation draws them."""
    for layer in list(encoder_layers(model, num_layers))[num_layers - k:]:
        for param in layer.parameters():
            # transformers 5 marks loaded weights so that its initialisers skip them.
            param._is_hf_initialized = False
        layer.apply(model._init_weights)


def trains_at_epoch(depth: int, epoch: int, every: int) -> bool:
    """Depth d (0 = top layer) joins training at epoch (d + 1) * every; before that only the head trains."""
    return epoch >= (depth + 1) * every


def epochs_to_unfreeze_all(num_layers: int, every: int) -> int:
    return (num_layers + 1) * every


def drop_frozen_gradients(named: Iterable[tuple[str, torch.nn.Parameter]], num_layers: int, epoch: int,
                          every: int) -> None:
    """A frozen layer's gradients are dropped before the optimizer step, so AdamW skips it (no update, no weight
    decay). Dropping them, rather than ``requires_grad=False``, keeps every parameter in the backward pass, which
    DDP requires (it refuses parameters that get no gradient)."""
    for name, param in named:
        if param.grad is not None and not trains_at_epoch(encoder_depth(name, num_layers), epoch, every):
            param.grad = None


def with_lora(model: torch.nn.Module, lora: dict) -> torch.nn.Module:
    """The encoder with peft's LoRA adapters; only the adapters train. ``target_modules: null`` lets peft choose
    for the model type (query and value projections for BERT)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise AlpacaError("model.classifier.lora needs the 'peft' package: pip install 'alpaca-lightning[adapters]' "
                          "(or pip install peft), or set model.classifier.lora=null.") from error
    # Hydra hands over config nodes; peft wants plain values (a list of target module names).
    options = {k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in dict(lora).items()}
    config = LoraConfig(r=options.pop("r", 8), lora_alpha=options.pop("alpha", 16),
                        lora_dropout=options.pop("dropout", 0.0), **options)
    return get_peft_model(model, config)


def plain_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """What a classifier saves: the encoder itself, or a copy with its LoRA adapters merged into the weights."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def parameter_count(parameters: Iterable[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)
