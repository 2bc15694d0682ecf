"""A small synthetic named-entity task (no network, no ../shared): short sentences with person, location and
organisation names, some of two words, written as CoNLL column files."""

from __future__ import annotations

import random
from pathlib import Path

ENTITIES = {
    "PER": [["alice"], ["bob"], ["carol", "smith"], ["dave"], ["erin", "jones"], ["frank"], ["grace"], ["heidi"]],
    "LOC": [["paris"], ["berlin"], ["new", "york"], ["rome"], ["oslo"], ["lima"], ["san", "jose"], ["kyoto"]],
    "ORG": [["acme"], ["globex"], ["initech", "corp"], ["umbrella"], ["hooli"], ["vandelay", "industries"]],
    "MISC": [["olympics"], ["euro"], ["nobel", "prize"], ["grammy"]],
}
CONTEXT = {"PER": ["said", "met", "called"], "LOC": ["in", "from", "near"], "ORG": ["at", "joined", "sued"],
           "MISC": ["won", "watched", "during"]}
FILLER = ["the", "report", "today", "was", "and", "then", "later", "news", "it", "we", "they", "quietly"]


def synthetic_sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(1, 3)):
            words_before = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
            words += words_before
            tags += ["O"] * len(words_before)
            if rng.random() < 0.8:
                kind = rng.choice(sorted(ENTITIES))
                name = rng.choice(ENTITIES[kind])
                cue = rng.choice(CONTEXT[kind])
                words += [cue] + name
                tags += ["O", f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        if not words:
            words, tags = ["nothing"], ["O"]
        sentences.append((words, tags))
    return sentences


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    """CoNLL-2003's layout: "token POS chunk NER" per line, a blank line between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{w} NN O {t}" for w, t in zip(words, tags)] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def token_task(folder: Path) -> dict[str, Path]:
    sentences = synthetic_sentences(360, seed=0)
    return {"train": write_conll(folder / "train.conll", sentences[:300]),
            "test": write_conll(folder / "test.conll", sentences[300:])}


def ner_overrides(task: dict[str, Path], out_dir: Path) -> list[str]:
    """A complete tiny-model token run: 2 pseudo-label rounds, seconds on CPU."""
    return [
        "experiment=ner",
        "task=token_files",
        f"task.sources.train.path={task['train']}",
        f"task.sources.test.path={task['test']}",
        "model=tiny_bert",
        "split.labels_per_class=8",
        "split.val_per_class=4",
        "split.pool_size=150",
        "fusion=mean",
        "calibration=none",
        "teacher_selection=all",
        "filters=[confidence]",
        "filters.confidence.threshold=0.5",
        "selftrain.max_rounds=2",
        "selftrain.min_precision=null",
        "selftrain.supervised_epochs=40",
        "selftrain.student_epochs=2",
        "data.batch_size=8",
        "hardware.precision=32-true",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={out_dir}",
        f"hydra.run.dir={out_dir}",
    ]
