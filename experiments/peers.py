"""What a user would run instead of alpaca_lightning, on exactly the splits of an alpaca-train configuration.

    python -m experiments.peers task=trec6 seed=0 split.labels_per_class=8 ...   # prints the peers' test metrics

A Hydra app over the same conf/ as alpaca-train (so the benchmark launches it like alpaca-train, in a multirun).

Two peers, both on the configured backbone (model.backbone) and only the labelled set:
- ``logistic_regression``: scikit-learn's LogisticRegression (its defaults) on the frozen encoder's sentence
  embeddings (sentence-transformers' own pooling: mean pooling and normalisation for all-MiniLM-L6-v2);
- ``setfit``: the ``setfit`` package's default recipe (contrastive pair fine-tuning, then a logistic head), seeded
  with the run's seed.

Both need the optional ``peers`` extra (``pip install -e '.[peers]'``: setfit, sentence-transformers, scikit-learn).
The splits come from the same ``load_splits`` as alpaca-train, so the same overrides give the same labelled, validation
and test examples.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

if __package__ in (None, ""):  # run as `python experiments/peers.py`: make the `experiments` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.artifacts import atomic_write_json
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.train import record_error

register_resolvers()

PEERS = ("logistic_regression", "setfit")


def _require_peers_extra() -> None:
    try:
        import setfit  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"The peer baselines need the optional 'peers' extra ({exc.name} is missing): pip install -e '.[peers]'"
        ) from exc


def _plain_texts(texts: list[Any]) -> list[str]:
    # sentence-pair tasks: the peers see the two texts joined, as the contrastive stage does
    return [t if isinstance(t, str) else " ".join(t) for t in texts]


def _scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"test/acc": float(accuracy_score(labels, predicted)), "test/f1_macro": float(f1_score(labels, predicted, average="macro"))}


def logistic_regression(
    model_path: str, train: tuple[list[str], np.ndarray], test: list[str], seed: int, scratch: Path
) -> np.ndarray:
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    encoder = SentenceTransformer(model_path, device="cpu")
    features = encoder.encode(train[0], batch_size=64)
    head = LogisticRegression(random_state=seed, max_iter=1000).fit(features, train[1])
    return head.predict(encoder.encode(test, batch_size=64))


def setfit(
    model_path: str, train: tuple[list[str], np.ndarray], test: list[str], seed: int, scratch: Path
) -> np.ndarray:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per run in the benchmark log, not a bar per step
    model = SetFitModel.from_pretrained(model_path)
    # the default recipe; only where it writes and what it logs are changed
    args = TrainingArguments(
        seed=seed, report_to="none", show_progress_bar=False, save_strategy="no", output_dir=str(scratch)
    )
    dataset = Dataset.from_dict({"text": train[0], "label": [int(y) for y in train[1]]})
    Trainer(model=model, args=args, train_dataset=dataset).train()
    return np.asarray(model.predict(test, batch_size=64))


def run_peers(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Both peers on the splits of the composed config ``cfg``; writes results.json (last, atomically)."""
    from hydra.utils import instantiate

    from alpaca_lightning.context import task_text
    from alpaca_lightning.pipeline import load_splits

    _require_peers_extra()
    splits = load_splits(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    if splits.test is None:
        raise SystemExit(f"task {cfg.task.name} has no test split: the peers are scored on test")
    # the backbone exactly as alpaca-train gets it (a local folder: installed, downloaded or, for tests, built)
    model_path = instantiate(cfg.model.backbone).materialize(out_dir, task_text(splits), cfg.seed)
    train = (_plain_texts(splits.labelled.texts), np.asarray(splits.labelled.labels))
    test_texts, test_labels = _plain_texts(splits.test.texts), np.asarray(splits.test.labels)
    results: dict[str, Any] = {"model": model_path, "labelled": len(train[0])}
    for name, peer in (("logistic_regression", logistic_regression), ("setfit", setfit)):
        start = time.time()
        predicted = peer(model_path, train, test_texts, int(cfg.seed), out_dir / "scratch")
        results[name] = {**_scores(test_labels, predicted), "seconds": round(time.time() - start, 1)}
    for scratch in ("scratch", "backbone"):
        shutil.rmtree(out_dir / scratch, ignore_errors=True)
    atomic_write_json(out_dir / "results.json", results)  # a folder with results.json is a finished job
    return results


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    (out_dir / "error.txt").unlink(missing_ok=True)
    try:
        results = run_peers(cfg, out_dir)
    except Exception as err:
        record_error(out_dir, err)
        raise
    print(json.dumps({name: results[name] for name in PEERS}, indent=2))


if __name__ == "__main__":
    main()
