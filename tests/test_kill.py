"""Kill tests: ``alpaca-train`` processes die by SIGKILL at many moments, and the re-runs of the same folder end with
the results of an uninterrupted run, redoing only the unit of work that was cut.

Kill points are the labels of ``alpaca_lightning.killpoints`` that an uninterrupted, traced run reaches (every
training step, prediction batch, file write, folder completion, unit start and end), sampled so that every stage and
every kind of point is hit. A chain of processes runs in one folder: process j dies at the j-th chosen label, which
lies later in the run than the (j-1)-th, so each label must be reached again. Then a few processes die at random
wall times. ``ALPACA_KILL_POINTS`` (default 20) sets the number of label kills (chains of at most
``POINTS_PER_CHAIN``), ``ALPACA_KILL_SEED`` replays a failure (the seed is printed), ``ALPACA_KILL_TIMED`` (default 2)
the number of wall-time kills.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import outcome, tiny_overrides
from tests.kill_harness import Zygote
from tests.token_data import ner_overrides, token_task

pytestmark = pytest.mark.slow  # whole runs killed and re-run, one after the other

KILL_POINTS = int(os.environ.get("ALPACA_KILL_POINTS", "20"))
KILL_TIMED = int(os.environ.get("ALPACA_KILL_TIMED", "2"))
POINTS_PER_CHAIN = 20
PROMPT = "task.prompt={pattern:'{text} it was {mask}.',verbalizers:[awful,great]}"


def kill_test_overrides(task: dict[str, Path], out: Path) -> list[str]:
    """Every stage kind in a small run: an MLM pretraining stage, round 0, a prompt teacher, two student rounds."""
    replaced = ("stages=", "selftrain.supervised_epochs", "split.", "filters.class_balanced.k")
    overrides = [o for o in tiny_overrides(task, out) if not o.startswith(replaced)]
    return overrides + [
        "split.labels_per_class=8", "split.val_size=40", "split.pool_size=80", "split.test_size=40",
        "filters.class_balanced.k=20", "stages=[mlm]", "stages.mlm.max_steps=2", "selftrain.supervised_epochs=3",
        "selftrain.student_epochs=1", PROMPT, "teachers=[classifier,cloze]", "teachers.cloze.epochs=2",
        "model.backbone.dropout=0.1",  # dropout draws from the RNG: a resumed fit must restore it
    ]


def one_round_overrides(task: dict[str, Path], out: Path) -> list[str]:
    """The same data and model, with round 0 and one student round only (pre-emption and sweep tests)."""
    replaced = ("stages", "teachers", "selftrain.max_rounds", "task.prompt=")
    return [o for o in kill_test_overrides(task, out) if not o.startswith(replaced)] + [
        "stages=[]", "teachers=[classifier]", "selftrain.max_rounds=1",
    ]


def stage_of(label: str, run: str) -> str:
    """The part of the run a kill point belongs to (the issue's list: pretraining, round 0, teacher prediction,
    fusion/filter, student training, report writing)."""
    if label.startswith("pseudo-labels"):
        return "fusion/filter"
    if "/stages/" in label:
        return "pretraining"
    if "teacher_predictions" in label or "/teachers/" in label:
        return "teachers"
    match = re.search(r"/rounds/(\.)?round_(\d+)", label)
    if match:
        return "round 0" if match.group(2) == "0" else "students"
    if "/backbone" in label:
        return "backbone"
    if label.endswith(("run_info.json", "config_resolved.yaml")):
        return "start"
    return "report" if re.fullmatch(rf"write {re.escape(run)}/[^/]+", label) else "other"


def choose_kill_labels(labels: list[str], count: int, rng: random.Random, run: str) -> list[str]:
    """``count`` labels, in run order: first one of every stage (each of a kind not yet picked, where possible),
    then one of every kind left, then round-robin over all (stage, kind) buckets."""
    buckets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for label in labels:
        buckets[(stage_of(label, run), label.split()[0])].append(label)
    for members in buckets.values():
        rng.shuffle(members)
    keys = sorted(buckets)
    rng.shuffle(keys)
    first: list[tuple[str, str]] = []
    for stage in sorted({stage for stage, _ in keys}):
        options = [key for key in keys if key[0] == stage]
        fresh = [key for key in options if key[1] not in {kind for _, kind in first}]
        first.append((fresh or options)[0])
    for kind in sorted({kind for _, kind in keys} - {kind for _, kind in first}):
        first.append(next(key for key in keys if key[1] == kind))
    order = first + [key for key in keys if key not in first]
    chosen: list[str] = []
    while len(chosen) < min(count, len(labels)):
        for key in order:
            if buckets[key] and len(chosen) < count:
                chosen.append(buckets[key].pop())
    position = {label: i for i, label in enumerate(labels)}
    return sorted(chosen, key=position.__getitem__)


def read_trace(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def unique_labels(trace: list[str]) -> list[str]:
    """Labels reached exactly once (a label reached twice, e.g. run_info.json, would fire at its first visit)."""
    counts: dict[str, int] = defaultdict(int)
    for label in trace:
        counts[label] += 1
    return [label for label in trace if counts[label] == 1]


def normalised(run_dir: Path) -> dict:
    """What must equal an uninterrupted run: results.json and the round table, without wall times and paths."""
    rounds_csv = (run_dir / "rounds.csv").read_text().splitlines()
    return {**outcome(run_dir), "rounds_csv_header": rounds_csv[0], "rounds_csv_rows": len(rounds_csv),
            "files": output_files(run_dir)}


def output_files(run_dir: Path) -> list[str]:
    """Every output a finished run has (report, figures, models, predictions), without the training logs and the
    hidden scratch (temporary files a kill left behind, per-rank prediction shards)."""
    names = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()]
    return sorted(str(n) for n in names if n.parts[0] != "logs" and not any(x.startswith(".") for x in n.parts))


def check_only_cut_units_redone(traces: list[list[str]]) -> None:
    """No process starts a unit that an earlier process completed."""
    done: set[str] = set()
    for j, trace in enumerate(traces):
        for label in trace:
            if label.startswith("unit-start "):
                assert label.split(" ", 1)[1] not in done, f"process {j} redid a complete unit: {label}"
        done |= {label.split(" ", 1)[1] for label in trace if label.startswith("unit-done ")}


def child_env(trace: Path, kill_at: str | None = None) -> dict[str, str]:
    env = {"ALPACA_KILL_TRACE": str(trace)}
    if kill_at is not None:
        env["ALPACA_KILL_AT"] = kill_at
    return env


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "offline"}
    env.pop("ALPACA_KILL_AT", None)
    process = Zygote(env)
    yield process
    process.close()


def traced_reference(zygote, argv: list[str], out: Path) -> dict:
    """An uninterrupted, traced run: the results to match and the kill points it reaches."""
    trace = out.parent / "trace"
    start = time.time()
    status = zygote.run(argv, child_env(trace), out.parent / "log")
    assert status == 0, (out.parent / "log").read_text()[-3000:]
    labels = [label.replace(str(out), "<run>") for label in unique_labels(read_trace(trace))]
    return {"dir": out, "labels": labels, "wall": time.time() - start, "outputs": normalised(out)}


@pytest.fixture(scope="module")
def reference(synthetic_task, zygote, tmp_path_factory):
    out = tmp_path_factory.mktemp("kill_reference") / "run"
    return traced_reference(zygote, kill_test_overrides(synthetic_task, out), out)


def run_chain(zygote, synthetic_task, reference, folder: Path, kill_labels: list[str],
              overrides=kill_test_overrides) -> list[list[str]]:
    """Kill one process at each label in turn, then finish; returns each process's trace."""
    out = folder / "run"
    argv = overrides(synthetic_task, out)
    traces = []
    for j, label in enumerate([*kill_labels, None]):
        trace, log = folder / f"trace_{j}", folder / f"log_{j}"
        target = label.replace("<run>", str(out)) if label else None
        status = zygote.run(argv, child_env(trace, target), log)
        traces.append(read_trace(trace))
        if label is None:
            assert status == 0, f"the final re-run failed: {log}\n" + log.read_text()[-3000:]
        else:
            assert status == -9, (f"process {j} was to die at '{label}' but exited {status}: the label was not "
                                  f"reached again, so the re-run skipped or reordered work ({log})")
    return traces


def test_sigkill_at_chosen_points_then_rerun_matches_an_uninterrupted_run(synthetic_task, zygote, reference,
                                                                         tmp_path) -> None:
    seed = int(os.environ.get("ALPACA_KILL_SEED", random.SystemRandom().randrange(10**6)))
    print(f"kill test seed: ALPACA_KILL_SEED={seed} ALPACA_KILL_POINTS={KILL_POINTS}")
    rng = random.Random(seed)
    killed, stages = 0, set()
    for chain in range(-(-KILL_POINTS // POINTS_PER_CHAIN)):
        count = min(POINTS_PER_CHAIN, KILL_POINTS - killed)
        labels = choose_kill_labels(reference["labels"], count, rng, "<run>")
        folder = tmp_path / f"chain_{chain}"
        folder.mkdir()
        traces = run_chain(zygote, synthetic_task, reference, folder, labels)
        assert normalised(folder / "run") == reference["outputs"], f"chain {chain} diverged (seed {seed})"
        check_only_cut_units_redone(traces)
        assert not list((folder / "run").rglob("*.resume")), "a mid-stage checkpoint outlived its unit"
        killed += len(labels)
        stages |= {stage_of(label, "<run>") for label in labels}
        print(f"chain {chain}: {len(labels)} kills, identical results; kill points: {labels}")
        if chain:
            shutil.rmtree(folder)  # a 200-point run keeps only the first chain's folders
    assert killed == KILL_POINTS
    if KILL_POINTS >= 20:
        assert {"pretraining", "round 0", "teachers", "fusion/filter", "students", "report"} <= stages


def test_a_token_run_killed_at_chosen_points_then_rerun_matches(zygote, tmp_path_factory, tmp_path) -> None:
    """The same guarantee for a token task (words as units, sentence pieces as examples)."""
    task = token_task(tmp_path_factory.mktemp("kill_token_data"))
    out = tmp_path_factory.mktemp("kill_token_reference") / "run"
    reference = traced_reference(zygote, ner_overrides(task, out), out)
    seed = int(os.environ.get("ALPACA_KILL_SEED", random.SystemRandom().randrange(10**6)))
    labels = choose_kill_labels(reference["labels"], 8, random.Random(seed), "<run>")
    print(f"token kill test: ALPACA_KILL_SEED={seed}, kill points {labels}")
    traces = run_chain(zygote, task, reference, tmp_path, labels, overrides=ner_overrides)
    assert normalised(tmp_path / "run") == reference["outputs"], f"diverged (seed {seed})"
    check_only_cut_units_redone(traces)


def test_sigkill_at_random_times_then_rerun_matches(synthetic_task, zygote, reference, tmp_path) -> None:
    seed = int(os.environ.get("ALPACA_KILL_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    out = tmp_path / "run"
    argv = kill_test_overrides(synthetic_task, out)
    times = sorted(rng.uniform(0.5, reference["wall"]) for _ in range(KILL_TIMED))
    print(f"random-time kills: ALPACA_KILL_SEED={seed}, after {[round(t, 1) for t in times]} s")
    traces = []
    for j, after in enumerate([*times, None]):
        trace = tmp_path / f"trace_{j}"
        status = zygote.run(argv, child_env(trace), tmp_path / f"log_{j}", kill_after=after)
        traces.append(read_trace(trace))
        assert status in ((0, -9) if after else (0,)), (tmp_path / f"log_{j}").read_text()[-3000:]
    assert normalised(out) == reference["outputs"]
    check_only_cut_units_redone(traces)


def test_a_finished_run_is_recognised_and_not_redone(synthetic_task, zygote, reference, tmp_path) -> None:
    """Re-running a finished folder reads results.json and stops: no unit starts, nothing is written."""
    trace = tmp_path / "trace"
    status = zygote.run(kill_test_overrides(synthetic_task, reference["dir"]), child_env(trace), tmp_path / "log")
    assert status == 0
    assert read_trace(trace) == []
    assert "already holds a finished run" in (tmp_path / "log").read_text()


def test_a_killed_sweep_reruns_only_its_unfinished_jobs(synthetic_task, zygote, tmp_path) -> None:
    """``--multirun`` killed in its second job; the same sweep again skips job 0 and resumes job 1 after its
    complete round 0, ending with job 1's results of an uninterrupted run."""
    sweep = tmp_path / "sweep"
    argv = [o for o in one_round_overrides(synthetic_task, tmp_path) if not o.startswith(("paths.", "hydra.run"))]
    argv += [f"hydra.sweep.dir={sweep}", "seed=0,1", "--multirun"]
    cut = f"unit-done {sweep / '1' / 'rounds' / 'round_0'}"
    assert zygote.run(argv, child_env(tmp_path / "trace_0", cut), tmp_path / "log_0") == -9
    assert (sweep / "0" / "results.json").is_file() and not (sweep / "1" / "results.json").exists()

    assert zygote.run(argv, child_env(tmp_path / "trace_1"), tmp_path / "log_1") == 0
    rerun = read_trace(tmp_path / "trace_1")
    assert not [label for label in rerun if f"{sweep / '0'}/" in label]  # the finished job did nothing
    assert "already holds a finished run" in (tmp_path / "log_1").read_text()
    started = [label for label in rerun if label.startswith("unit-start")]
    assert f"unit-start {sweep / '1' / 'rounds' / 'round_1'}" in started
    assert f"unit-start {sweep / '1' / 'rounds' / 'round_0'}" not in started

    single = tmp_path / "single"
    single_argv = one_round_overrides(synthetic_task, single) + ["seed=1"]
    assert zygote.run(single_argv, child_env(tmp_path / "trace_2"), tmp_path / "log_2") == 0
    assert normalised(sweep / "1") == normalised(single)


def test_a_prediction_killed_mid_chunk_then_rerun_writes_the_same_file(zygote, tiny_run_once, synthetic_task,
                                                                       tmp_path) -> None:
    """alpaca-predict in chunks of 30 rows, killed inside a chunk's batches, between a shard's or a part's temporary
    file and its rename, after a chunk and while the output is written: each re-run finishes only the chunks not
    yet done, and the output is byte for byte the uninterrupted one."""
    def argv(out: Path) -> list[str]:
        return [str(tiny_run_once.out), str(synthetic_task["test"]), "-o", str(out), "--chunk-size", "30",
                "data.predict_batch_size=8", "hardware.precision=32-true"]

    reference = tmp_path / "reference" / "labelled.csv"
    reference.parent.mkdir()
    trace = tmp_path / "reference" / "trace"
    status = zygote.run(argv(reference), child_env(trace), tmp_path / "reference" / "log", entry="predict")
    assert status == 0, (tmp_path / "reference" / "log").read_text()[-3000:]
    labels = [label.replace(str(reference), "<out>") for label in unique_labels(read_trace(trace))]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        by_kind["batch" if " batch " in label else label.split()[0]].append(label)
    assert {"batch", "write", "chunk"} <= set(by_kind), by_kind.keys()
    rng = random.Random(int(os.environ.get("ALPACA_KILL_SEED", "0")))
    chosen = sorted({rng.choice(members) for members in by_kind.values() for _ in range(2)}, key=labels.index)
    out = tmp_path / "chain" / "labelled.csv"
    out.parent.mkdir()
    chunks_done = []
    for j, label in enumerate([*chosen, None]):
        trace_j, log = tmp_path / "chain" / f"trace_{j}", tmp_path / "chain" / f"log_{j}"
        target = label.replace("<out>", str(out)) if label else None
        status = zygote.run(argv(out), child_env(trace_j, target), log, entry="predict")
        assert status == (0 if label is None else -9), (label, log.read_text()[-3000:])
        chunks_done.append([line for line in read_trace(trace_j) if line.startswith("chunk ")])
    finished = [chunk for process in chunks_done for chunk in process]
    assert len(finished) == len(set(finished)) == 4, f"a chunk was predicted twice or never: {chunks_done}"
    assert out.read_bytes() == reference.read_bytes()
    assert not out.with_name(out.name + ".parts").exists()
