"""The one prediction path: pseudo-labelling, validation and test all run through ``predict_split``.

Each process predicts its shard of a split (no padding duplicates) and writes it to its own file; after a barrier
the shards are merged by dataset index and checked so that every example was predicted exactly once. Metrics are
then computed on the merged, unpadded predictions, so they are the same on 1 or N processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.killpoints import kill_point
from alpaca_lightning.once import produce_once
from alpaca_lightning.selftrain.calibration import nll
from alpaca_lightning.models.loading import load_tensors


@dataclass
class Predictions:
    """Class probabilities for every example of a split, row i = dataset index i."""

    probs: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    def __len__(self) -> int:
        return len(self.probs)


class ShardWriter(BasePredictionWriter):
    """Collects this process's (index, probs) and writes them to ``rank{r}-of-{world}.pt`` at the end."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self._index: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._index, self._probs = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self._index.append(prediction["index"].detach().cpu())
        self._probs.append(prediction["probs"].detach().float().cpu())
        kill_point(f"predict {self.out_dir} batch {batch_idx}")

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        index = torch.cat(self._index) if self._index else torch.zeros(0, dtype=torch.long)
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, 0)
        path = shard_path(self.out_dir, trainer.global_rank, trainer.world_size)
        tmp = path.with_suffix(".tmp")
        torch.save({"index": index, "probs": probs}, tmp)
        kill_point(f"write {path}")
        tmp.replace(path)
        trainer.strategy.barrier("prediction shards written")


def shard_path(out_dir: Path, rank: int, world_size: int) -> Path:
    return Path(out_dir) / f"rank{rank}-of-{world_size}.pt"


def merge_shards(out_dir: Path, world_size: int, expected_size: int) -> Predictions:
    shards = [load_tensors(shard_path(out_dir, r, world_size)) for r in range(world_size)]
    index = torch.cat([s["index"] for s in shards]).numpy()
    non_empty = [s["probs"] for s in shards if len(s["index"])]
    probs = torch.cat(non_empty).numpy() if non_empty else np.zeros((0, 0), dtype=np.float32)
    counts = np.bincount(index, minlength=expected_size) if len(index) else np.zeros(expected_size, dtype=int)
    if len(counts) != expected_size or not (counts == 1).all():
        bad = np.flatnonzero(counts != 1)[:10].tolist()
        raise RuntimeError(
            f"Prediction shards in {out_dir} do not cover each of the {expected_size} examples exactly once "
            f"(first bad indices: {bad}). This is a bug in sharding; please report it."
        )
    merged = np.empty_like(probs)
    merged[index] = probs
    return Predictions(merged)


def predict_split(
    module: pl.LightningModule,
    datamodule: SelfTrainingDataModule,
    split: str,
    make_trainer: Callable[..., pl.Trainer],
    out_dir: Path,
) -> Predictions:
    datamodule.use_for_prediction(split)
    expected = datamodule.unit_count(split)
    trainer = make_trainer(callbacks=[ShardWriter(out_dir)])
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    return merge_shards(out_dir, trainer.world_size, expected)


def predict_split_once(
    make_module: Callable[[], pl.LightningModule],
    datamodule: SelfTrainingDataModule,
    split: str,
    make_trainer: Callable[..., pl.Trainer],
    out_dir: Path,
    predict: Callable[..., Predictions] | None = None,
) -> Predictions:
    """``predict_split`` (or the task kind's ``predict``) for a model that no longer changes (a teacher): the merged
    probabilities are kept in ``out_dir/probs.npy``, so a teacher that teaches several rounds predicts the pool
    once. The module is only built when there is something to predict."""
    out_dir = Path(out_dir)
    shards = out_dir.with_name(f".{out_dir.name}.shards")
    produce_once(
        out_dir,
        lambda: (predict or predict_split)(make_module(), datamodule, split, make_trainer, shards),
        lambda predictions, tmp: np.save(tmp / "probs.npy", predictions.probs),
        f"predictions of {split}",
    )
    return Predictions(np.load(out_dir / "probs.npy"))


def classification_metrics(predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
    """Accuracy, macro-F1 (torchmetrics) and negative log-likelihood on the examples whose gold label is known.
    The NLL uses every probability, so it is a less noisy model-selection signal than accuracy on a tiny set."""
    known = gold >= 0
    if not known.any():
        return {}
    num_classes = predictions.probs.shape[1]
    preds = torch.as_tensor(predictions.labels[known])
    target = torch.as_tensor(gold[known])
    return {
        f"{prefix}/acc": float(multiclass_accuracy(preds, target, num_classes, average="micro")),
        f"{prefix}/f1_macro": float(multiclass_f1_score(preds, target, num_classes, average="macro")),
        f"{prefix}/nll": nll(predictions.probs[known], gold[known]),
        f"{prefix}/n": int(known.sum()),
    }
