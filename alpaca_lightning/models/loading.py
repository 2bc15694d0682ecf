"""Safe loading: every model, tokenizer and tensor file of a run goes through here.

- ``from_pretrained``: Hugging Face loaders get ``trust_remote_code`` from the config key
  ``model.trust_remote_code`` (false unless a config turns it on), so a model folder or hub repository cannot run
  its own Python code by default. Weights load from safetensors (what ``save_pretrained`` writes), or from
  ``pytorch_model.bin`` through transformers' ``torch.load(weights_only=True)``.
- ``load_tensors``: our own ``torch.save`` files (classifier heads, prediction shards) with ``weights_only=True``:
  tensors and plain containers only, never pickled objects.
- ``check_model_folder``: a local model folder that lacks its config, weights or tokenizer gets an error naming the
  missing files before a library fails deep inside.

The policy is one per process, set by ``pipeline.run`` from the run's config, so the many modules that load models
(classifiers, teachers, stages) need no extra argument. Processes that DDP spawns start again from the default
(false).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alpaca_lightning.errors import AlpacaError

_POLICY = {"trust_remote_code": False}

WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def set_trust_remote_code(enabled: bool) -> None:
    _POLICY["trust_remote_code"] = bool(enabled)


def trust_remote_code() -> bool:
    return _POLICY["trust_remote_code"]


def from_pretrained(loader: Callable[..., Any], name_or_path: str, **kwargs: Any) -> Any:
    """``loader`` is a ``from_pretrained`` (AutoModel.from_pretrained, AutoTokenizer.from_pretrained, ...)."""
    return loader(str(name_or_path), trust_remote_code=trust_remote_code(), **kwargs)


def load_tensors(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def check_model_folder(folder: Path, needs_tokenizer: bool = True) -> None:
    """A local model folder must hold a config, weights and (for a backbone) a tokenizer."""
    folder = Path(folder)
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"weights (one of {list(WEIGHT_FILES)})")
    if needs_tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"a tokenizer (one of {list(TOKENIZER_FILES)})")
    if missing:
        raise AlpacaError(
            f"The model folder {folder} lacks {', '.join(missing)}. Point model.backbone.name_or_path at a complete "
            f"folder (written by save_pretrained of the model and of its tokenizer), or copy the missing files in."
        )
