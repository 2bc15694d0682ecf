"""The similarity teacher: zero-shot labels from the task's label sentences, read by a sentence encoder.

    teachers=[classifier,similarity] fusion=product calibration=teachers   (the defaults)

Each text gets the class whose label sentence (``task.prompt.label_sentences``, e.g. "It was great.") its embedding
is closest to, by cosine similarity of the encoder's pooled embeddings. Without label sentences, each label name is
put into several ``templates`` ("{label}", "This is {label}.", ...) and the class is described by the mean of their
unit embeddings (prompt ensembling): a bare name is a weak, noisy prompt, and one phrasing's quirks average out.

It learns nothing from the labelled set, so its errors are not the classifier's: on sentiment, where 8 labels per
class can leave the classifier near chance, good label sentences alone classify most pool texts right. It is a
teacher like the others, fused with the classifier where teacher selection lets it in (``validation``: where it
lowers the fused validation NLL; ``checked``: where it also passes checks on gold labels and on the pool).

Cosine similarities are close together (a few hundredths apart), so their softmax is sharpened by one temperature
fitted on validation (``calibration.scale_to_validation``, as for the fused teacher): its confidences then mean about
what they say before any fusion or filter reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.context import RunContext
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.once import produce_once
from alpaca_lightning.selftrain.calibration import scale_to_validation
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.propagation import encoder_embeddings
from alpaca_lightning.selftrain.teachers import TEACHER_SPLITS, Teacher, label_sentences

ENCODERS = ("round0", "backbone")
# softmax(cosine / COSINE_SCALE) before the fitted temperature: puts the temperature grid (0.25-50) over effective
# scales of 0.0025-0.5, which spans what the cosine gaps of sentence encoders need
COSINE_SCALE = 0.01


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)


def class_embeddings(sentence_embeddings: np.ndarray, per_class: int) -> np.ndarray:
    """The mean unit embedding of each class's ``per_class`` consecutive sentences (its templates)."""
    if per_class == 1:
        return sentence_embeddings  # one sentence per class: as it is (the cosine normalises it)
    unit = unit_rows(sentence_embeddings)
    return unit.reshape(-1, per_class, unit.shape[1]).mean(axis=1)


def similarity_probabilities(texts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``softmax(cos(text, label sentence) / COSINE_SCALE)`` per text; rows are texts, columns classes."""
    logits = unit_rows(texts) @ unit_rows(labels).T / COSINE_SCALE
    logits -= logits.max(axis=1, keepdims=True)
    scores = np.exp(logits)
    return scores / scores.sum(axis=1, keepdims=True)


class LabelSimilarityTeacher(Teacher):
    """Without ``task.prompt.label_sentences`` the label names, each in every one of ``templates``, stand in for
    them. ``encoder``: ``round0`` reads the round-0 encoder (the backbone after the round-0 stages, e.g. the
    contrastive one), ``backbone`` the backbone as loaded. Predicted once per run (``<run>/teachers/similarity/``)."""

    name = "similarity"

    def __init__(self, encoder: str = "round0", templates: tuple[str, ...] = ("{label}",)) -> None:
        if encoder not in ENCODERS:
            raise AlpacaError(f"teachers.similarity.encoder must be one of {ENCODERS}, got '{encoder}'.")
        templates = tuple(templates)
        if not templates or any(t.count("{label}") != 1 for t in templates):
            raise AlpacaError(
                f"teachers.similarity.templates must be a non-empty list of phrases with one {{label}} slot each, "
                f"e.g. ['{{label}}', 'This is {{label}}.'], got {list(templates)}."
            )
        self.encoder = encoder
        self.templates = templates

    @property
    def trains_on_labelled(self) -> bool:
        """Only the backbone as loaded has never seen the labelled set (the round-0 stages train on it)."""
        return self.encoder == "round0"

    @property
    def scored_splits(self) -> tuple[str, ...]:
        """The splits it predicts: the labelled set too where it never trained on it, so that those labels can judge
        it (only then: the texts are embedded in batches, and a row's batch-mates can move its last bits)."""
        return TEACHER_SPLITS if self.trains_on_labelled else ("labelled", *TEACHER_SPLITS)

    def check(self, ctx: RunContext) -> None:
        self.sentences(ctx)

    def sentences(self, ctx: RunContext) -> list[str]:
        """``task.prompt.label_sentences`` (one per label), or every template of every label name, label by label
        (a weak description, e.g. '0' and '1', is left out by teacher selection)."""
        if (ctx.prompt or {}).get("label_sentences"):
            return label_sentences(ctx, self.name)
        return [template.format(label=name) for name in ctx.label_names for template in self.templates]

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        folder = ctx.run_dir / "teachers" / self.name
        produce_once(folder, lambda: self._score(ctx, plan), lambda probs, tmp: np.savez(tmp / "probs.npz", **probs),
                     f"teacher '{self.name}'")
        with np.load(folder / "probs.npz") as saved:  # a folder from before "labelled" was scored lacks it
            return {split: Predictions(saved[split]) for split in saved.files}

    def _score(self, ctx: RunContext, plan: TrainingPlan) -> dict[str, np.ndarray]:
        sentences = self.sentences(ctx)
        info(f"teacher '{self.name}': label sentences {sentences}")
        encoder = plan.encoder_path if self.encoder == "round0" else ctx.backbone_path
        sentence_ids = ctx.tokenizer(sentences, truncation=True)["input_ids"]
        splits = self.scored_splits
        ids = {split: ctx.datamodule.token_ids(split) for split in splits}
        rows = [row for split in splits for row in ids[split]] + list(sentence_ids)
        embeddings = encoder_embeddings(ctx, Path(encoder), rows)
        labels = class_embeddings(embeddings[-len(sentences):], len(sentences) // len(ctx.label_names))
        probs = similarity_probabilities(embeddings[: -len(sentences)], labels)
        bounds = np.cumsum([0] + [len(ids[split]) for split in splits])
        by_split = {split: probs[bounds[i]:bounds[i + 1]] for i, split in enumerate(splits)}
        others = [split for split in splits if split != "validation"]
        _, (val, *rest) = scale_to_validation(by_split["validation"], np.asarray(ctx.splits.validation.labels),
                                              *(by_split[split] for split in others))
        return {**dict(zip(others, rest)), "validation": val}
