"""The propagation teacher: label spreading (Zhou et al., 2004) over a kNN graph of the teacher round's encoder.

    teachers=[classifier,propagation] fusion=agreement

The classifier teacher reads each pool text alone; this teacher reads the pool's structure: a text whose nearest
neighbours (labelled, pool and validation texts, cosine similarity of the encoder's pooled embeddings) carry one
class gets that class. The graph is built from the *current* round's fine-tuned encoder, not the frozen backbone:
on frozen MiniLM embeddings spreading fell below a linear probe on three of four unseen datasets. The spread label
mass is balanced against the pool's class prior (given, or estimated by EM) so that a dense class cannot absorb the
graph, and the teacher is fused with the classifier rather than replacing it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alpaca_lightning.context import RunContext
from alpaca_lightning.once import produce_once
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.prior import pool_prior
from alpaca_lightning.selftrain.teachers import TEACHER_SPLITS, Teacher

GRAPH_SPLITS = ("labelled", *TEACHER_SPLITS)


def knn_graph(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Symmetric, normalised kNN affinity ``D^-1/2 W D^-1/2`` of cosine similarities (negatives clipped to 0)."""
    unit = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
    similarity = np.clip(unit @ unit.T, 0.0, None)
    np.fill_diagonal(similarity, 0.0)
    k = min(k, len(unit) - 1)
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(unit), 0), int)
    weights = np.zeros_like(similarity)
    rows = np.repeat(np.arange(len(unit)), neighbours.shape[1])
    weights[rows, neighbours.ravel()] = similarity[rows, neighbours.ravel()]
    weights = np.maximum(weights, weights.T)
    degree = np.clip(weights.sum(axis=1), 1e-12, None)
    return weights / np.sqrt(degree[:, None] * degree[None, :])


def spread_labels(graph: np.ndarray, seeds: np.ndarray, num_classes: int, alpha: float, iterations: int) -> np.ndarray:
    """Label spreading ``F <- alpha S F + (1 - alpha) Y``; ``seeds`` holds a class per node, -1 for unlabelled.
    Returns the unnormalised class scores F."""
    start = np.zeros((len(seeds), num_classes))
    known = seeds >= 0
    start[np.flatnonzero(known), seeds[known]] = 1.0
    scores = start.copy()
    for _ in range(iterations):
        scores = alpha * graph @ scores + (1 - alpha) * start
    return scores


def balanced_probabilities(scores: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Class mass normalisation: scale each class column so that its total mass follows ``prior``, then normalise
    rows. Rows the graph never reached become uniform."""
    mass = np.clip(scores.sum(axis=0), 1e-12, None)
    balanced = scores * (np.asarray(prior) / mass)
    totals = balanced.sum(axis=1, keepdims=True)
    uniform = np.full_like(balanced, 1.0 / balanced.shape[1])
    return np.where(totals > 0, balanced / np.clip(totals, 1e-300, None), uniform)


@torch.no_grad()
def encoder_embeddings(ctx: RunContext, model_folder: Path, token_ids: list[list[int]]) -> np.ndarray:
    """The teacher classifier's own features (its pooling, layer mix and multi-layer settings, learned values
    included), so the graph and the classifier see the same representation."""
    from alpaca_lightning.stages.contrastive import pooled_embeddings  # stages import the teachers' modules

    classifier = ctx.make_classifier(str(model_folder))
    return pooled_embeddings(classifier, token_ids, ctx.tokenizer.pad_token_id).numpy()


class PropagationTeacher(Teacher):
    name = "propagation"

    def __init__(self, k: int = 10, alpha: float = 0.99, iterations: int = 30) -> None:
        if k < 1 or not 0 < alpha < 1 or iterations < 1:
            raise ValueError(f"teachers.propagation needs k >= 1, 0 < alpha < 1 and iterations >= 1 "
                             f"(got k={k}, alpha={alpha}, iterations={iterations}).")
        self.k, self.alpha, self.iterations = k, alpha, iterations

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        folder = Path(teacher_model).parent / "teacher_predictions" / self.name  # once per teacher round
        produce_once(folder, lambda: self._spread(ctx, Path(teacher_model)),
                     lambda probs, tmp: np.savez(tmp / "probs.npz", **probs), f"teacher '{self.name}'")
        with np.load(folder / "probs.npz") as saved:
            return {split: Predictions(saved[split]) for split in TEACHER_SPLITS}

    def _spread(self, ctx: RunContext, teacher_model: Path) -> dict[str, np.ndarray]:
        ids = {split: ctx.datamodule.token_ids(split) for split in GRAPH_SPLITS}
        embeddings = encoder_embeddings(ctx, teacher_model, [row for split in GRAPH_SPLITS for row in ids[split]])
        labelled = np.asarray(ctx.splits.labelled.labels)
        seeds = np.concatenate([labelled, np.full(len(embeddings) - len(labelled), -1)])
        scores = spread_labels(knn_graph(embeddings, self.k), seeds, len(ctx.label_names), self.alpha,
                               self.iterations)
        unlabelled = scores[len(labelled):]
        raw = unlabelled / np.clip(unlabelled.sum(axis=1, keepdims=True), 1e-12, None)
        probs = balanced_probabilities(scores, pool_prior(ctx.class_prior, raw, labelled))
        bounds = np.cumsum([0] + [len(ids[split]) for split in GRAPH_SPLITS])
        return {split: probs[bounds[i]:bounds[i + 1]] for i, split in enumerate(GRAPH_SPLITS) if split != "labelled"}
