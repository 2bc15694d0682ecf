"""Teachers: whatever predicts class probabilities for the pool (and validation) at the start of a round.

classifier  the teacher round's model (the schedule: the last round, or the best so far), optionally
            averaged with extra supervised models of other seeds
cloze       an MLM prompt: pattern with a mask slot + one verbalizer word per label (PET / LM-BFF)
nsp         a next-sentence prompt: one label sentence per label, scored by the NSP head (NSP-BERT)
propagation label spreading over a kNN graph of the teacher round's encoder (selftrain/propagation.py)
similarity  zero-shot: the closest label sentence in the round-0 encoder's embedding space (selftrain/similarity.py)

Every teacher predicts through the one prediction path (``predict_split``). The prompt teachers and the extra
classifier seeds learn from the labelled set only, so each is trained once per run (``alpaca_lightning.once``:
seeded at build, saved under ``<run>/teachers/<name>/``, reused by every round and on resume). Several active
teachers are combined by ``selftrain/fusion.py``. A teacher is one class with ``predict(ctx, plan, teacher_model)`` plus
one YAML file in conf/teachers/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.context import RunContext
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import UNKNOWN_LABEL, TaskSplits, TextSplit
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.prompt import IS_NEXT
from alpaca_lightning.once import produce_once, seeded_build, train_once
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions, predict_split, predict_split_once

TEACHER_SPLITS = ("pool", "validation")


class Teacher:
    name = "teacher"
    # False for a teacher whose predictions never learned from the labelled set: it then also predicts "labelled",
    # and teacher selection may judge it on those gold labels beside validation's
    trains_on_labelled = True

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        """Class probabilities for each of TEACHER_SPLITS; ``teacher_model`` is the teacher round's model folder,
        ``plan`` the run's encoder, learning rates and epochs (read-only)."""
        raise NotImplementedError

    def check(self, ctx: RunContext) -> None:
        """Fail before any training when the task cannot serve this teacher (missing prompt keys, ...)."""


class ClassifierTeacher(Teacher):
    """The teacher round's classifier. ``extra_seeds`` > 0 averages it with that many supervised classifiers trained
    on the labelled set with other seeds (a seed ensemble: smoother, better-calibrated probabilities)."""

    name = "classifier"
    units = ("sentence", "word")

    def __init__(self, extra_seeds: int = 0) -> None:
        self.extra_seeds = extra_seeds

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        members = [teacher_model] + [self._extra_member(ctx, plan, j) for j in range(1, self.extra_seeds + 1)]
        out: dict[str, Predictions] = {}
        for split in TEACHER_SPLITS:
            # Each member's predictions sit beside its model (<round>/teacher_predictions/<split>), made once.
            probs = [
                predict_split_once(lambda m=model: ctx.make_classifier(str(m)), ctx.datamodule, split,
                                   ctx.trainers.predict, model.parent / "teacher_predictions" / split,
                                   predict=ctx.kind.predict).probs
                for model in members
            ]
            out[split] = Predictions(np.mean(probs, axis=0))
        return out

    def _extra_member(self, ctx: RunContext, plan: TrainingPlan, j: int) -> Path:
        seed = ctx.seed + 1000 * j
        labelled = ctx.datamodule.for_round(0, order_seed=seed)  # labelled only, in the member's own batch order
        stage = f"teacher_classifier_seed{j}"
        return train_once(
            ctx.run_dir / "teachers" / f"classifier_seed{j}" / "model", seed,
            build=lambda: ctx.make_classifier(plan.encoder_path, plan.supervised_lr),
            fit=lambda module: fit_on_labelled(module, ctx, labelled, stage, plan.supervised_epochs),
            save=lambda module, tmp: module.save_pretrained(tmp), what=stage,
        )


def fit_on_labelled(
    module: ClassifierModule, ctx: RunContext, datamodule: SelfTrainingDataModule, stage: str, epochs: int
) -> None:
    info(f"{stage}: training on {len(datamodule.training_set())} labelled examples")
    module.stage_name = stage
    ctx.trainers.fit(stage, max_epochs=epochs).fit(module, datamodule=datamodule)


class PromptTeacher(Teacher):
    """Shared by the cloze and NSP teachers: rewrite the splits through the prompt, fine-tune the prompt module on
    the labelled set, predict the pool and validation once, and turn the module's outputs into class scores."""

    required_prompt_keys: tuple[str, ...] = ()

    def __init__(self, module: Callable[..., ClassifierModule], epochs: int | None = None) -> None:
        self.make_module = module
        self.epochs = epochs

    # --- what a prompt teacher defines ---------------------------------------------------------------------------
    def prompted_splits(self, ctx: RunContext) -> TaskSplits:
        raise NotImplementedError

    def build_module(self, ctx: RunContext, plan: TrainingPlan) -> ClassifierModule:
        raise NotImplementedError

    def class_scores(self, probs: np.ndarray, num_examples: int) -> np.ndarray:
        return probs

    # --- the shared procedure --------------------------------------------------------------------------------------
    def prompt(self, ctx: RunContext) -> dict[str, Any]:
        prompt = ctx.prompt or {}
        missing = [key for key in self.required_prompt_keys if not prompt.get(key)]
        if missing:
            raise AlpacaError(
                f"The '{self.name}' teacher needs task.prompt.{' and task.prompt.'.join(missing)}, which this task "
                f"does not set. Add them to the task config (see conf/task/sst2.yaml), or use teachers=[classifier]."
            )
        return prompt

    def check(self, ctx: RunContext) -> None:
        self.prompted_splits(ctx)  # validates the prompt keys and their shape

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        folder = ctx.run_dir / "teachers" / self.name
        produce_once(folder, lambda: self._train_and_predict(ctx, plan, folder),
                     lambda scores, tmp: np.savez(tmp / "predictions.npz", **scores), f"teacher '{self.name}'")
        with np.load(folder / "predictions.npz") as saved:
            return {split: Predictions(saved[split]) for split in TEACHER_SPLITS}

    def _train_and_predict(self, ctx: RunContext, plan: TrainingPlan, folder: Path) -> dict[str, np.ndarray]:
        splits = self.prompted_splits(ctx)
        datamodule = ctx.make_datamodule(splits).for_round(0)
        module = seeded_build(ctx.seed, lambda: self.build_module(ctx, plan))
        epochs = self.epochs if self.epochs is not None else plan.supervised_epochs
        fit_on_labelled(module, ctx, datamodule, f"teacher_{self.name}", epochs)
        shards = folder.with_name(f".{folder.name}.shards")
        return {
            split: self.class_scores(
                predict_split(module, datamodule, split, ctx.trainers.predict, shards / split).probs,
                len(getattr(ctx.splits, split)),
            )
            for split in TEACHER_SPLITS
        }


def label_sentences(ctx: RunContext, teacher: str) -> list[str]:
    """``task.prompt.label_sentences``, one per label in label order, or an error that says what to add."""
    sentences = list((ctx.prompt or {}).get("label_sentences") or [])
    if not sentences:
        raise AlpacaError(
            f"The '{teacher}' teacher needs task.prompt.label_sentences, which this task does not set. Add one "
            f"sentence per label to the task config (see conf/task/sst2.yaml), or use teachers=[classifier]."
        )
    if len(sentences) != len(ctx.splits.label_names):
        raise AlpacaError(
            f"task.prompt.label_sentences has {len(sentences)} sentences for {len(ctx.splits.label_names)} "
            f"labels {ctx.splits.label_names}; give one per label, in label order."
        )
    return sentences


def _require_single_texts(split: TextSplit, teacher: str) -> None:
    if len(split) and isinstance(split.texts[0], tuple):
        raise AlpacaError(f"The '{teacher}' teacher supports single-text tasks; this task has text pairs.")


class ClozeTeacher(PromptTeacher):
    """``task.prompt.pattern`` holds ``{text}`` and ``{mask}`` and starts or ends with ``{text}``, e.g.
    ``"{text} It was {mask}."``; ``task.prompt.verbalizers`` gives one single-token word per label."""

    name = "cloze"
    required_prompt_keys = ("pattern", "verbalizers")

    def _prompt_parts(self, ctx: RunContext) -> tuple[str, str]:
        pattern = self.prompt(ctx)["pattern"]
        if pattern.count("{text}") != 1 or pattern.count("{mask}") != 1:
            raise AlpacaError(f"task.prompt.pattern needs one {{text}} and one {{mask}} slot, got '{pattern}'.")
        prefix, suffix = (part.replace("{mask}", ctx.tokenizer.mask_token) for part in pattern.split("{text}"))
        if prefix.strip() and suffix.strip():
            raise AlpacaError(
                f"task.prompt.pattern must start or end with {{text}} (so that truncation cuts the text, never the "
                f"mask), got '{pattern}'."
            )
        return prefix.strip(), suffix.strip()

    def prompted_splits(self, ctx: RunContext) -> TaskSplits:
        prefix, suffix = self._prompt_parts(ctx)

        def rewrite(split: TextSplit) -> TextSplit:
            _require_single_texts(split, self.name)
            # A text pair truncates the longer part first: the text, not the short prompt with the mask.
            texts = [(t, suffix) if suffix else (prefix, t) for t in split.texts]
            return TextSplit(texts, split.labels)

        s = ctx.splits
        return TaskSplits(s.label_names, rewrite(s.labelled), rewrite(s.pool), rewrite(s.validation), None, s.info)

    def verbalizer_ids(self, ctx: RunContext) -> list[int]:
        words = list(self.prompt(ctx)["verbalizers"])
        if len(words) != len(ctx.splits.label_names):
            raise AlpacaError(
                f"task.prompt.verbalizers has {len(words)} words for {len(ctx.splits.label_names)} labels "
                f"{ctx.splits.label_names}; give one word per label, in label order."
            )
        ids = []
        for word in words:
            pieces = ctx.tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise AlpacaError(
                    f"Verbalizer '{word}' is {len(pieces)} tokens for this tokenizer; each verbalizer must be a "
                    f"single token (pick another word in task.prompt.verbalizers)."
                )
            ids.append(pieces[0])
        if len(set(ids)) != len(ids):
            raise AlpacaError(f"task.prompt.verbalizers {words} map to repeated tokens; give distinct words.")
        return ids

    def check(self, ctx: RunContext) -> None:
        super().check(ctx)
        self.verbalizer_ids(ctx)

    def build_module(self, ctx: RunContext, plan: TrainingPlan) -> ClassifierModule:
        return self.make_module(
            model_path=plan.encoder_path, verbalizer_token_ids=self.verbalizer_ids(ctx),
            mask_token_id=ctx.tokenizer.mask_token_id, global_batch_size=ctx.global_batch_size,
        )


class NextSentenceTeacher(PromptTeacher):
    """``task.prompt.label_sentences`` gives one short sentence per label, e.g. ``["It was terrible.", "It was
    great."]``. Each text becomes one (text, label sentence) pair per label; trained with the true label's
    sentence as the positive and the others as negatives."""

    name = "nsp"
    required_prompt_keys = ("label_sentences",)

    def prompted_splits(self, ctx: RunContext) -> TaskSplits:
        sentences = label_sentences(ctx, self.name)

        def pairs(split: TextSplit) -> TextSplit:
            _require_single_texts(split, self.name)
            # example i, label sentence c -> row i * classes + c; the gold sentence is the "is next" one
            texts = [(t, s) for t in split.texts for s in sentences]
            gold = np.repeat(split.labels, len(sentences))
            candidate = np.tile(np.arange(len(sentences)), len(split))
            labels = np.where(gold == candidate, IS_NEXT, 1 - IS_NEXT)
            return TextSplit(texts, np.where(gold == UNKNOWN_LABEL, UNKNOWN_LABEL, labels))

        s = ctx.splits
        return TaskSplits(["is_next", "not_next"], pairs(s.labelled), pairs(s.pool), pairs(s.validation), None, s.info)

    def build_module(self, ctx: RunContext, plan: TrainingPlan) -> ClassifierModule:
        return self.make_module(model_path=plan.encoder_path, global_batch_size=ctx.global_batch_size)

    def class_scores(self, probs: np.ndarray, num_examples: int) -> np.ndarray:
        is_next = probs[:, IS_NEXT].reshape(num_examples, -1)
        return is_next / np.clip(is_next.sum(axis=1, keepdims=True), 1e-12, None)
