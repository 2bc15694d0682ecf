"""Using a finished run, measured: ``alpaca-predict`` against the run's own test accuracy, the Python API against
``experiments/speed.py``'s hand loop, and the exported ONNX and sentence-transformers models against the fp32 path.

    python experiments/use_model.py                                # runs the default job first (`make train`)
    python experiments/use_model.py --run-dir outputs/rotten_tomatoes/<time>   # a finished sentence-task run

1. The run's test split is drawn again from its config (the same texts and labels as the run scored) and written
   as a CSV with the task's text and label columns; ``alpaca-predict`` labels it as a user would (a subprocess, the
   run's own precision and batch size) and prints its accuracy, which must equal the run's recorded test accuracy.
2. Speed, fp32, batches of ``data.predict_batch_size``, in one process: ``alpaca_lightning.load(run)
   .predict_proba(texts)`` (texts in, tokenization timed) against speed.py's hand loop (sorted by length, dynamic
   padding, inference mode) with the same work timed (speed.py's ``encode`` of the texts) and as speed.py times it
   (tokenized beforehand, not timed), in rounds that run the three back to back in rotating order. The
   ``alpaca-predict`` wall time of step 1 (Python start-up, model load, file in and out) is reported too.
3. Latency of one text per call, the unit of a served request: the API against the module's forward pass.
4. ``alpaca-export`` to ONNX (+ int8) and sentence-transformers; each predicts the test texts with its own library
   (onnxruntime + tokenizers; SentenceTransformer.encode + softmax): argmax agreement and the largest probability
   difference against the API's fp32 probabilities, and the seconds each took (onnxruntime in length-sorted
   batches of the same size; sentence-transformers in its own batching).

Writes use_model.json and use_model.md to --out (default experiments/results/use_model_cpu).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

if __package__ in (None, ""):  # run as `python experiments/use_model.py`: make the `experiments` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.artifacts import atomic_write_json, atomic_write_text
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.inference.classifier import RunClassifier, load
from alpaca_lightning.inference.export import export
from alpaca_lightning.inference.run_folder import TrainedRun
from alpaca_lightning.pipeline import load_splits
from experiments.speed import encode, hand_loop_probs

BIN = Path(sys.executable).parent
HAND_LOOP = "hand loop (speed.py), tokenized beforehand"
HAND_LOOP_TOKENIZING = "hand loop (speed.py), tokenization timed"
API = "alpaca_lightning.load(run).predict_proba, tokenization included"


def default_job(work: Path) -> Path:
    """The embedded default job (``make train``), seed 0, in ``work/run`` (reused when finished)."""
    run_dir = work / "run"
    if not (run_dir / "results.json").is_file():
        subprocess.run([str(BIN / "alpaca-train"), f"hydra.run.dir={run_dir}"], check=True, cwd=REPO_ROOT)
    return run_dir


def write_test_split(run: TrainedRun, path: Path) -> pd.DataFrame:
    """The run's test texts with their gold labels as the task's raw values, in the task's column names."""
    cfg = run.cfg
    test = load_splits(cfg).test
    raw = list(cfg.task.label_values or cfg.task.label_names)
    columns = list(cfg.task.text_columns)
    texts = [t if isinstance(t, tuple) else (t,) for t in test.texts]
    frame = pd.DataFrame({name: [t[i] for t in texts] for i, name in enumerate(columns)})
    frame[cfg.task.label_column] = [raw[i] for i in test.labels]
    frame.to_csv(path, index=False)
    return frame


def cli_accuracy(run_dir: Path, source: Path, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "alpaca-predict"), str(run_dir), str(source), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    match = re.search(r"accuracy on the (\d+) rows .*: ([\d.]+)%  \(([\d.eE-]+)\)", done.stdout)
    return {"seconds": seconds, "rows": int(match.group(1)), "printed": match.group(2),
            "accuracy": float(match.group(3))}


def speed(clf32: RunClassifier, texts: list[str], rounds: int) -> dict[str, Any]:
    """The API (texts in, tokenization timed) against speed.py's hand loop twice: with the same texts-in work
    (speed.py's ``encode`` timed) and as speed.py times it (tokenized beforehand, not timed). Each round runs the
    three back to back, in an order that rotates from round to round; on a shared machine whose speed drifts, the
    time ratio within a round is steadier than a ratio of medians."""
    tokenizer, module = clf32.tokenizer, clf32.module
    batch, max_length = int(clf32.cfg.data.predict_batch_size), int(clf32.cfg.data.max_length)
    encoded = encode(texts, tokenizer, max_length)
    paths = {HAND_LOOP_TOKENIZING: lambda: hand_loop_probs(module, encode(texts, tokenizer, max_length), tokenizer,
                                                           batch),
             HAND_LOOP: lambda: hand_loop_probs(module, encoded, tokenizer, batch),
             API: lambda: clf32.predict_proba(texts)}
    hand_loop_probs(module, encoded[:256], tokenizer, batch)  # warm-up
    clf32.predict_proba(texts[:256])
    names = list(paths)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    probs: dict[str, np.ndarray] = {}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            probs[name] = paths[name]()
            seconds[name].append(time.perf_counter() - start)
    rows = []
    for name in names:
        ratios = [hand / api for hand, api in zip(seconds[name], seconds[API])]
        rows.append({"path": name, "median_seconds": statistics.median(seconds[name]),
                     "sentences_per_s": len(texts) / statistics.median(seconds[name]), "seconds": seconds[name],
                     "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                     "max_prob_difference_to_api": float(np.abs(probs[name] - probs[API]).max())})
    return {"batch_size": batch, "rounds": rounds, "rows": rows, "api_probs": probs[API]}


def latency(clf32: RunClassifier, text: str, calls: int = 20) -> dict[str, float]:
    """One text at a time (a served request's unit): the API's median milliseconds against the module's forward
    pass alone, both fp32."""
    batch = dict(clf32.tokenizer([text], return_tensors="pt"))
    clf32.predict_proba([text])  # warm-up

    def median_ms(call: Any) -> float:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    with torch.inference_mode():
        forward = median_ms(lambda: clf32.module(batch))
    return {"api_ms": median_ms(lambda: clf32.predict_proba([text])), "forward_ms": forward, "calls": calls}


def onnx_probs(folder: Path, model: str, texts: list[str], batch: int) -> np.ndarray:
    import onnxruntime
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    session = onnxruntime.InferenceSession(str(folder / model))
    names = [i.name for i in session.get_inputs()]
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    padding = tokenizer.padding
    tokenizer.no_padding()
    order = np.argsort([-len(e.ids) for e in tokenizer.encode_batch(texts)], kind="stable")  # longest first, as
    tokenizer.enable_padding(**padding)                                                      # the project batches
    probs = np.zeros((len(texts), 0), dtype=np.float32)
    for start in range(0, len(texts), batch):
        index = order[start:start + batch]
        encodings = tokenizer.encode_batch([texts[i] for i in index])
        inputs = {n: np.array([getattr(e, fields[n]) for e in encodings], dtype=np.int64) for n in names}
        out = session.run(["probabilities"], inputs)[0]
        probs = probs if probs.shape[1] else np.zeros((len(texts), out.shape[1]), dtype=np.float32)
        probs[index] = out
    return probs


def st_probs(folder: Path, texts: list[str], batch: int) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    logits = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_tensor=True, batch_size=batch)
    return torch.softmax(logits, dim=-1).numpy()


def exports(run_dir: Path, work: Path, texts: list[str], reference: np.ndarray, gold: np.ndarray,
            batch: int) -> list[dict[str, Any]]:
    options = argparse.Namespace(round_index=None, int8=True, overwrite=True)
    onnx_dir = export(run_dir, work / "onnx", "onnx", options)
    st_dir = export(run_dir, work / "sentence-transformers", "sentence-transformers", options)
    rows = []
    for name, predict in (("ONNX fp32 (onnxruntime)", lambda: onnx_probs(onnx_dir, "model.onnx", texts, batch)),
                          ("ONNX int8 (onnxruntime)", lambda: onnx_probs(onnx_dir, "model_int8.onnx", texts, batch)),
                          ("sentence-transformers", lambda: st_probs(st_dir, texts, batch))):
        start = time.perf_counter()
        probs = predict()
        rows.append({"format": name, "seconds": time.perf_counter() - start,
                     "argmax_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
                     "max_prob_difference": float(np.abs(probs - reference).max()),
                     "accuracy": float((probs.argmax(1) == gold).mean())})
    return rows


def markdown(report: dict[str, Any]) -> str:
    cli = report["predict"]
    lines = [
        f"Run: {report['run_dir']} (round {report['round']}, task {report['task']}, {report['test_rows']} test "
        f"sentences, {report['threads']} CPU threads)", "",
        f"- `alpaca-predict` accuracy: {cli['printed']}% ({cli['accuracy']!r}); the run's recorded test accuracy: "
        f"{100 * report['recorded_test_acc']:.1f}% ({report['recorded_test_acc']!r}); equal to the printed digit: "
        f"{report['equal_to_printed_digit']}; wall time of the command: {cli['seconds']:.1f} s", "",
        f"Speed, fp32, batches of {report['speed']['batch_size']}, {report['speed']['rounds']} rounds that run the "
        f"three paths back to back in rotating order (ratio: a path's time over the API's in the same round; > 1: "
        f"the API is faster):", "",
        "| path | median sentences/s | ratio: median (range) | max prob. difference to the API |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['path']} | {r['sentences_per_s']:.0f} | {r['ratio_median']:.3f} ({r['ratio_min']:.3f} to "
              f"{r['ratio_max']:.3f}) | {r['max_prob_difference_to_api']:.1e} |" for r in report["speed"]["rows"]]
    latency = report["latency"]
    lines += ["", f"One text per call (median of {latency['calls']}): the API {latency['api_ms']:.1f} ms, the module's "
              f"forward pass alone {latency['forward_ms']:.1f} ms."]
    lines += ["", "Exports against the API's fp32 probabilities:", "",
              "| format | argmax agreement | max prob. difference | accuracy | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['format']} | {100 * r['argmax_agreement']:.2f}% | {r['max_prob_difference']:.1e} | "
              f"{100 * r['accuracy']:.1f}% | {r['seconds']:.1f} |" for r in report["exports"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="a finished sentence-task run (default: run the default job)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/alpaca_use_model"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "experiments" / "results" / "use_model_cpu")
    parser.add_argument("--rounds", type=int, default=8, help="timing rounds (each runs every path once)")
    args = parser.parse_args()
    register_resolvers()
    args.work.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir or default_job(args.work)
    clf = load(run_dir)
    frame = write_test_split(clf.run, args.work / "test.csv")
    predicted = cli_accuracy(run_dir, args.work / "test.csv", args.work / "test.predictions.csv")
    recorded = clf.run.round_record["test/acc"]
    clf32 = load(run_dir, overrides=["hardware.precision=32-true"])
    texts = frame[clf.cfg.task.text_columns[0]].tolist()
    measured = speed(clf32, texts, args.rounds)
    gold = np.asarray(load_splits(clf.cfg).test.labels)
    report = {
        "run_dir": str(run_dir), "round": clf.run.round_index, "task": clf.cfg.task.name, "test_rows": len(frame),
        "threads": torch.get_num_threads(), "predict": predicted, "recorded_test_acc": recorded,
        "equal_to_printed_digit": predicted["printed"] == f"{100 * recorded:.1f}",
        "speed": {k: v for k, v in measured.items() if k != "api_probs"},
        "latency": latency(clf32, texts[0]),
        "exports": exports(run_dir, args.work, texts, measured["api_probs"], gold, measured["batch_size"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "use_model.json", report)
    atomic_write_text(args.out / "use_model.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
