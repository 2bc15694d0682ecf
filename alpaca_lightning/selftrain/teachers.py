"""Teachers: whatever predicts class probabilities for the pool (and validation) at the start of a round.

classifier  the best round's model so far (optionally averaged with extra supervised models of other seeds)
cloze       an MLM prompt: pattern with a mask slot + one verbalizer word per label (PET / LM-BFF)
nsp         a next-sentence prompt: one label sentence per label, scored by the NSP head (NSP-BERT)

Every teacher predicts through the one prediction path (``predict_split``). The prompt teachers and the extra
classifier seeds learn from the labelled set only, so each is trained once per run, under
``<run>/teachers/<name>/``, and its predictions are reused by every round (resume skips them too).
Several active teachers are combined by ``selftrain/fusion.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.artifacts import atomic_directory, is_complete, mark_complete
from alpaca_lightning.console import info
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.prompt import IS_NEXT
from alpaca_lightning.selftrain.prediction import Predictions, predict_split, predict_split_once
from alpaca_lightning.trainer import TrainerFactory

TEACHER_SPLITS = ("pool", "validation")


@dataclass
class TeacherContext:
    """What teachers need from the run; built once by the pipeline."""

    splits: TaskSplits
    datamodule: SelfTrainingDataModule
    make_datamodule: Callable[[TaskSplits], SelfTrainingDataModule]
    make_classifier: Callable[[str], ClassifierModule]
    trainers: TrainerFactory
    tokenizer: PreTrainedTokenizerBase
    backbone_path: str
    run_dir: Path
    seed: int
    supervised_epochs: int
    global_batch_size: int
    prompt: dict[str, Any] | None = None


class Teacher:
    name = "teacher"

    def predict(self, ctx: TeacherContext, best_model: Path) -> dict[str, Predictions]:
        """Class probabilities for each of TEACHER_SPLITS; ``best_model`` is the best round's model folder."""
        raise NotImplementedError


class ClassifierTeacher(Teacher):
    """The best round's classifier. ``extra_seeds`` > 0 averages it with that many supervised classifiers trained
    on the labelled set with other seeds (a seed ensemble: smoother, better-calibrated probabilities)."""

    name = "classifier"

    def __init__(self, extra_seeds: int = 0) -> None:
        self.extra_seeds = extra_seeds

    def predict(self, ctx: TeacherContext, best_model: Path) -> dict[str, Predictions]:
        members = [best_model] + [self._extra_member(ctx, j) for j in range(1, self.extra_seeds + 1)]
        out: dict[str, Predictions] = {}
        for split in TEACHER_SPLITS:
            # Each member's predictions sit beside its model (<round>/teacher_predictions/<split>), made once.
            probs = [
                predict_split_once(lambda m=model: ctx.make_classifier(str(m)), ctx.datamodule, split,
                                   ctx.trainers.predict, model.parent / "teacher_predictions" / split).probs
                for model in members
            ]
            out[split] = Predictions(np.mean(probs, axis=0))
        return out

    def _extra_member(self, ctx: TeacherContext, j: int) -> Path:
        folder = ctx.run_dir / "teachers" / f"classifier_seed{j}"
        model_dir = folder / "model"
        if is_complete(model_dir):
            return model_dir
        ctx.datamodule.start_round(0)  # labelled only; the round loop installs its pseudo-labels afterwards
        module = ctx.make_classifier(ctx.backbone_path)
        stage, seed = f"teacher_classifier_seed{j}", ctx.seed + 1000 * j
        fit_on_labelled(module, ctx, ctx.datamodule, stage, seed, ctx.supervised_epochs)
        if is_global_zero():
            with atomic_directory(model_dir) as tmp:
                module.save_pretrained(tmp)
        barrier()
        return model_dir


def fit_on_labelled(
    module: ClassifierModule, ctx: TeacherContext, datamodule: SelfTrainingDataModule, stage: str, seed: int,
    epochs: int,
) -> None:
    pl.seed_everything(seed, workers=True, verbose=False)
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
    def prompted_splits(self, ctx: TeacherContext) -> TaskSplits:
        raise NotImplementedError

    def build_module(self, ctx: TeacherContext) -> ClassifierModule:
        raise NotImplementedError

    def class_scores(self, probs: np.ndarray, num_examples: int) -> np.ndarray:
        return probs

    # --- the shared procedure --------------------------------------------------------------------------------------
    def prompt(self, ctx: TeacherContext) -> dict[str, Any]:
        prompt = ctx.prompt or {}
        missing = [key for key in self.required_prompt_keys if not prompt.get(key)]
        if missing:
            raise AlpacaError(
                f"The '{self.name}' teacher needs task.prompt.{' and task.prompt.'.join(missing)}, which this task "
                f"does not set. Add them to the task config (see conf/task/sst2.yaml), or use teachers=[classifier]."
            )
        return prompt

    def predict(self, ctx: TeacherContext, best_model: Path) -> dict[str, Predictions]:
        folder = ctx.run_dir / "teachers" / self.name
        cached = folder / "predictions.npz"
        if not is_complete(folder):
            self._train_and_predict(ctx, folder)
        with np.load(cached) as saved:
            return {split: Predictions(saved[split]) for split in TEACHER_SPLITS}

    def _train_and_predict(self, ctx: TeacherContext, folder: Path) -> None:
        splits = self.prompted_splits(ctx)
        datamodule = ctx.make_datamodule(splits)
        datamodule.start_round(0)
        module = self.build_module(ctx)
        epochs = self.epochs if self.epochs is not None else ctx.supervised_epochs
        fit_on_labelled(module, ctx, datamodule, f"teacher_{self.name}", ctx.seed, epochs)
        scores = {}
        for split in TEACHER_SPLITS:
            probs = predict_split(module, datamodule, split, ctx.trainers.predict, folder / "shards" / split).probs
            scores[split] = self.class_scores(probs, len(getattr(ctx.splits, split)))
        if is_global_zero():
            # Predictions and the COMPLETE marker go last, so a crash leaves no teacher that looks finished.
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "predictions.tmp.npz"
            np.savez(tmp, **scores)
            tmp.replace(folder / "predictions.npz")
            mark_complete(folder)
        barrier()


def _require_single_texts(split: TextSplit, teacher: str) -> None:
    if len(split) and isinstance(split.texts[0], tuple):
        raise AlpacaError(f"The '{teacher}' teacher supports single-text tasks; this task has text pairs.")


class ClozeTeacher(PromptTeacher):
    """``task.prompt.pattern`` holds ``{text}`` and ``{mask}`` and starts or ends with ``{text}``, e.g.
    ``"{text} It was {mask}."``; ``task.prompt.verbalizers`` gives one single-token word per label."""

    name = "cloze"
    required_prompt_keys = ("pattern", "verbalizers")

    def _prompt_parts(self, ctx: TeacherContext) -> tuple[str, str]:
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

    def prompted_splits(self, ctx: TeacherContext) -> TaskSplits:
        prefix, suffix = self._prompt_parts(ctx)

        def rewrite(split: TextSplit) -> TextSplit:
            _require_single_texts(split, self.name)
            # A text pair truncates the longer part first: the text, not the short prompt with the mask.
            texts = [(t, suffix) if suffix else (prefix, t) for t in split.texts]
            return TextSplit(texts, split.labels)

        s = ctx.splits
        return TaskSplits(s.label_names, rewrite(s.labelled), rewrite(s.pool), rewrite(s.validation), None, s.info)

    def verbalizer_ids(self, ctx: TeacherContext) -> list[int]:
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

    def build_module(self, ctx: TeacherContext) -> ClassifierModule:
        return self.make_module(
            model_path=ctx.backbone_path, verbalizer_token_ids=self.verbalizer_ids(ctx),
            mask_token_id=ctx.tokenizer.mask_token_id, global_batch_size=ctx.global_batch_size,
        )


class NextSentenceTeacher(PromptTeacher):
    """``task.prompt.label_sentences`` gives one short sentence per label, e.g. ``["It was terrible.", "It was
    great."]``. Each text becomes one (text, label sentence) pair per label; trained with the true label's
    sentence as the positive and the others as negatives."""

    name = "nsp"
    required_prompt_keys = ("label_sentences",)

    def label_sentences(self, ctx: TeacherContext) -> list[str]:
        sentences = list(self.prompt(ctx)["label_sentences"])
        if len(sentences) != len(ctx.splits.label_names):
            raise AlpacaError(
                f"task.prompt.label_sentences has {len(sentences)} sentences for {len(ctx.splits.label_names)} "
                f"labels {ctx.splits.label_names}; give one per label, in label order."
            )
        return sentences

    def prompted_splits(self, ctx: TeacherContext) -> TaskSplits:
        sentences = self.label_sentences(ctx)

        def pairs(split: TextSplit) -> TextSplit:
            _require_single_texts(split, self.name)
            # example i, label sentence c -> row i * classes + c; the gold sentence is the "is next" one
            texts = [(t, s) for t in split.texts for s in sentences]
            gold = np.repeat(split.labels, len(sentences))
            candidate = np.tile(np.arange(len(sentences)), len(split))
            labels = np.where(gold == candidate, IS_NEXT, 1 - IS_NEXT)
            return TextSplit(texts, labels)

        s = ctx.splits
        return TaskSplits(["is_next", "not_next"], pairs(s.labelled), pairs(s.pool), pairs(s.validation), None, s.info)

    def build_module(self, ctx: TeacherContext) -> ClassifierModule:
        return self.make_module(model_path=ctx.backbone_path, global_batch_size=ctx.global_batch_size)

    def class_scores(self, probs: np.ndarray, num_examples: int) -> np.ndarray:
        is_next = probs[:, IS_NEXT].reshape(num_examples, -1)
        return is_next / np.clip(is_next.sum(axis=1, keepdims=True), 1e-12, None)
