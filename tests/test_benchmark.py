"""The benchmark's code path (experiments/benchmark.py, with experiments/peers.py and experiments/round_selection.py
on its output) on the tiny model, on the fixture datasets and, where present, on ../shared/data; and its overrides
and tables without training."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from experiments.benchmark import benchmark
from experiments.round_selection import runs_of, score
from tests.conftest import compose_config, data_root_of


def run_best(root: Path, run: str) -> dict[str, float]:
    """The best round's metrics as the run itself wrote them (results.json), independent of the benchmark's tables."""
    return json.loads((root / "runs" / run / "results.json").read_text())["best"]


# per data root: labelled examples of the full-supervision row (TREC-6's training rows less 8 per class for
# validation, capped at the smoke variant's 200) and of the peers (K per class of 6 classes)
LABELLED = {"fixture": {"full": 72 - 6 * 8, "peers": 6 * 4}, "shared": {"full": 200, "peers": 6 * 8}}
# labels per class: 4 of the fixture's 12 per class (and 4 for validation: 24 texts, where 12 tied the candidates)
K = {"fixture": 4, "shared": 8}
# Two self-training candidates that differ on validation, so that the choice between them means something: on the
# real data, round 0 fine-tuned at another rate; the fixture's 24 validation texts tie those two, so there the
# second candidate learns nothing (validation at chance).
CANDIDATES = {"fixture": {"default": [], "lr=1e-12": ["stages=[]", "model.classifier.optimizer.lr=1e-12"]},
              "shared": {"default": [], "finetune_lr=3e-3": ["stages.probe.finetune_lr=3e-3"]}}


@dataclass(frozen=True)
class Benchmarked:
    root: str
    k: int
    out: Path
    report: dict

    @property
    def candidates(self) -> list[str]:
        return list(CANDIDATES[self.root])

    def folder(self, candidate: str) -> str:
        suffix = "" if candidate == "default" else "-" + re.sub(r"[^A-Za-z0-9_.]+", "-", candidate)
        return f"trec6_K{self.k}_selftrain{suffix}_s0"


# both slow: a benchmark is several processes and runs (the fixture datasets' one runs in `make test` and CI)
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow) for name in ("fixture", "shared")])
def benchmarked(request, tmp_path_factory) -> Benchmarked:
    """One smoke benchmark (supervised grid, two self-training candidates, full supervision, the peers) per data
    root, read by the tests below."""
    from experiments import benchmark as module

    root = data_root_of(request.param)
    out = tmp_path_factory.mktemp(f"benchmark_{root.name}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPACA_DATA_DIR", str(root.path))  # the runs are other processes
        patch.setitem(module.VARIANTS, "smoke", replace(module.VARIANTS["smoke"], candidates=CANDIDATES[root.name]))
        report = benchmark("smoke", out, extra=["model=tiny_bert"], ks=[K[root.name]])
    return Benchmarked(root.name, K[root.name], out, report)


def test_benchmark_smoke_variant(benchmarked) -> None:
    k, out, report = benchmarked.k, benchmarked.out, benchmarked.report
    cell = report["cells"][0]
    assert cell["dataset"] == "trec6" and cell["K"] == k
    assert len(cell["selftrain"]["rounds"][0]) == 2
    assert cell["full"]["labelled"] == LABELLED[benchmarked.root]["full"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["cells"][0]["supervised"] == cell["supervised"]
    table = (out / "results.md").read_text()
    assert f"| trec6 | {k} | self-training |" in table and "full supervision" in table
    assert (out / "test_acc_per_round.png").stat().st_size > 1000
    # the peers ran on the same splits: K labels per class of TREC-6's 6 classes, scored on the same test subset
    peers = json.loads((out / "runs" / f"trec6_K{k}_peers_s0" / "results.json").read_text())
    assert peers["labelled"] == LABELLED[benchmarked.root]["peers"]
    assert not (out / "runs" / f"trec6_K{k}_peers_s0" / "scratch").exists()
    for name in ("logistic_regression", "setfit"):
        assert cell[name]["test/acc"] == [peers[name]["test/acc"]]
    assert f"| trec6 | {k} | SetFit |" in table and "gap closed" in table
    # The aggregates, against the best-round test accuracies that each run wrote itself (one seed, one recipe)
    chosen = benchmarked.folder(report["selftrain_candidate"])
    sup, st, full = (run_best(out, name)["test/acc"] for name in (f"trec6_K{k}_sup0_s0", chosen, "trec6_full_s0"))
    assert (cell["supervised"]["test/acc"], cell["selftrain"]["test/acc"], cell["full"]["test/acc"]) == (
        [sup], [st], [full])
    summary = report["summary"][f"trec6 K={k}"]
    assert (summary["supervised"], summary["selftrain"], summary["full"]) == pytest.approx((sup, st, full))
    assert summary["gain"] == pytest.approx(st - sup)
    if full != sup:
        assert summary["gap closed"] == pytest.approx((st - sup) / (full - sup))
    # alpaca-report's table of the same runs: supervised, each self-training candidate, full supervision
    by_kind: dict[tuple[str, str], list[float]] = {}
    for row in csv.DictReader((out / "alpaca_report" / "report.csv").open()):
        by_kind.setdefault((row["split.labels_per_class"], row["selftrain.max_rounds"]), []).append(
            float(row["best:test/acc mean"]))
    candidates = sorted(run_best(out, benchmarked.folder(name))["test/acc"] for name in benchmarked.candidates)
    assert {kind: sorted(values) for kind, values in by_kind.items()} == {
        (str(k), "0"): [pytest.approx(sup)], (str(k), "1"): pytest.approx(candidates), ("None", "0"): [
            pytest.approx(full)]}
    # round_selection.py reads the benchmark's per-round records: the last round is the self-training run's
    rounds = json.loads((out / "runs" / chosen / "rounds.json").read_text())
    rules = score(runs_of([out / "results.json"]))
    assert rules["last round"]["per_cell"] == {f"trec6 K={k}": pytest.approx(rounds[-1]["test/acc"])}
    assert rules["round 0"]["per_cell"] == {f"trec6 K={k}": pytest.approx(rounds[0]["test/acc"])}


def test_benchmark_reports_the_self_training_candidate_best_on_validation(benchmarked) -> None:
    out, report = benchmarked.out, benchmarked.report
    val = {name: run_best(out, benchmarked.folder(name))["val/acc"] for name in benchmarked.candidates}  # one seed
    assert len(set(val.values())) == 2, "a tie would let any choice pass"
    scores = {c["candidate"]: c for c in report["candidates"]}
    assert {name: scores[name]["val/acc"] for name in scores} == pytest.approx(val)
    assert report["selftrain_candidate"] == max(val, key=val.get)
    chosen = run_best(out, benchmarked.folder(max(val, key=val.get)))
    assert report["cells"][0]["selftrain"]["test/acc"] == [chosen["test/acc"]]
    assert "Self-training settings tried" in (out / "results.md").read_text()


def test_reuse_stages_settings_replace_the_keys_they_set() -> None:
    from experiments.reuse_stages import parse_setting, with_overrides

    name, extra = parse_setting("lr2e-5:model.classifier.optimizer.lr=2e-5,selftrain.max_rounds=0")
    assert name == "lr2e-5" and extra == ["model.classifier.optimizer.lr=2e-5", "selftrain.max_rounds=0"]
    assert parse_setting("default:") == ("default", [])
    base = ["task=sst2", "model.classifier.optimizer.lr=0.0001", "selftrain.supervised_epochs=20"]
    assert with_overrides(base, extra) == ["task=sst2", "selftrain.supervised_epochs=20", *extra]
    with pytest.raises(SystemExit, match="NAME:OVERRIDE"):
        parse_setting(":selftrain.max_rounds=0")
    _, lists = parse_setting("a:filters=[confidence,distribution_alignment],task.class_prior=[0.5,0.5],seed=1")
    assert lists == ["filters=[confidence,distribution_alignment]", "task.class_prior=[0.5,0.5]", "seed=1"]


def test_reuse_stages_summary_covers_every_run_in_the_folder(tmp_path) -> None:
    """Two invocations with the same --out build one table: a row per (setting, dataset), round means over seeds."""
    from experiments.reuse_stages import write_summary

    def run(name: str, tests: list[float], pseudo: list[float | None]) -> None:
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        rounds = [{"test/acc": t, "pseudo/acc": p, "teacher/val_ece": p and p / 10} for t, p in zip(tests, pseudo)]
        (folder / "rounds.json").write_text(json.dumps(rounds))
        best = {"val/acc": 0.5, "test/acc": tests[-1]}
        (folder / "results.json").write_text(json.dumps({"best": best}))

    run("sst2_a_s0", [0.5, 0.6], [None, 0.7])
    run("sst2_a_s1", [0.7, 0.8], [None, 0.9])
    run("trec6_my_setting_s0", [0.2, 0.4, 0.6], [None, 0.5, 0.5])
    (tmp_path / "runs" / "sst2_a_s2").mkdir()  # unfinished: left out
    write_summary(tmp_path, "python experiments/reuse_stages.py --out x a:")
    table = write_summary(tmp_path, "python experiments/reuse_stages.py --out x my_setting:")
    assert "| a | sst2 | 2 | 50.0 | 70.0 ± 14.1 | 60.0 / 70.0 | - / 80.0 | - / 8.0 |" in table
    run("sst2_short_s0", [0.5], [None])  # stopped after round 0
    run("sst2_short_s1", [0.7, 0.9], [None, 1.0])
    table = write_summary(tmp_path, "x")
    assert "| short | sst2 | 2 | 50.0 | 70.0 ± 28.3 | 60.0 / 90.0 (1 runs) | - / 100.0 (1 runs) | - / 10.0 (1 runs) |" in table
    assert "| my_setting | trec6 | 1 | 50.0 | 60.0 | 20.0 / 40.0 / 60.0 | - / 50.0 / 50.0 | - / 5.0 / 5.0 |" in table
    text = (tmp_path / "results.md").read_text()
    assert text.count("`python experiments/reuse_stages.py") == 2
    # round 1's teachers, where the runs recorded them
    for seed, (classifier, similarity) in enumerate([(0.6, 0.8), (0.7, 0.9)]):
        folder = tmp_path / "runs" / f"sst2_fused_s{seed}"
        folder.mkdir()
        first = {"test/acc": 0.7, "pseudo/acc": 0.9, "pseudo/count": 100 + seed * 100, "teacher/pool_acc": 0.85,
                 "teacher_classifier/pool_acc": classifier, "teacher_similarity/pool_acc": similarity}
        (folder / "rounds.json").write_text(json.dumps([{"test/acc": 0.6}, first]))
        (folder / "results.json").write_text(json.dumps({"best": {"val/acc": 0.5, "test/acc": 0.7}}))
    write_summary(tmp_path, "x")
    text = (tmp_path / "results.md").read_text()
    assert "| fused | sst2 | 2 | classifier 65.0, similarity 85.0, fused 85.0 | 150 | 90.0 |" in text
    assert "| a | sst2 | " not in text.split("round 1's teachers")[1]  # no teacher records, no row


def test_prompt_names_runs_every_job_on_the_label_names(tmp_path) -> None:
    """--prompt names adds task.prompt=null to every run of every phase, before the --override flags (so that those
    still win), and says so in the report; nothing is trained: the launch records the jobs and runs none."""
    from dataclasses import dataclass, field

    from experiments.benchmark import check_prompt, default_out
    from experiments.launch import Job, Launch, Outcome

    @dataclass
    class RecordingLaunch(Launch):
        seen: list[Job] = field(default_factory=list)  # shared by the peers' copy (dataclasses.replace)

        def run(self, jobs: list[Job], title: str = "runs") -> list[Outcome]:
            self.seen.extend(jobs)
            outcomes = [Outcome(job, error="not run (recorded by the test)") for job in jobs]
            self.failures.extend(outcomes)
            return outcomes

    launch = RecordingLaunch(label="benchmark")
    report = benchmark("smoke", tmp_path, extra=["model=tiny_bert"], launch=launch, prompt="names")
    names = [job.name for job in launch.seen]
    assert any("_sup0_" in name for name in names) and any("_peers_" in name for name in names)
    for job in launch.seen:
        assert job.overrides.count("task.prompt=null") == 1, job.name
        assert job.overrides.index("task.prompt=null") < job.overrides.index("model=tiny_bert")
    assert report["prompt"] == "names"
    assert "prompt: label names only (task.prompt=null)" in (tmp_path / "results.md").read_text().splitlines()[0]
    assert compose_config(["task=sst2", "task.prompt=null"]).task.prompt is None  # the override composes
    # the default mode adds nothing, and writes its own folder; a folder of the other mode is refused
    plain = RecordingLaunch(label="benchmark")
    benchmark("smoke", tmp_path / "task", extra=["model=tiny_bert"], launch=plain)
    assert plain.seen and not any("task.prompt=null" in job.overrides for job in plain.seen)
    assert (default_out("cpu", "task").name, default_out("cpu", "names").name) == ("benchmark_cpu",
                                                                                  "benchmark_cpu_names")
    with pytest.raises(SystemExit, match="holds runs of --prompt names, not task"):
        check_prompt("task", tmp_path)


def test_benchmark_refuses_a_dataset_without_a_token_cap(tmp_path) -> None:
    from experiments.benchmark import MAX_LENGTH

    assert {"r8", "newsgroups20"} <= set(MAX_LENGTH)
    with pytest.raises(SystemExit, match=r"unknown datasets \['imdb'\].*MAX_LENGTH"):
        benchmark("cpu", tmp_path, datasets=["imdb"])


def test_summary_and_candidate_tables_show_macro_f1_beside_accuracy() -> None:
    from experiments.benchmark import VARIANTS, candidate_lines, summary, summary_lines

    def row(acc: list[float], f1: list[float]) -> dict[str, list[float]]:
        return {"test/acc": acc, "test/f1_macro": f1}

    cell = {"dataset": "r8", "K": 8, "supervised": row([0.6, 0.7], [0.4, 0.5]), "full": row([0.9], [0.8]),
            "selftrain": {**row([0.8, 0.8], [0.6, 0.5]), "round0/test/acc": [0.6, 0.7],
                          "round0/test/f1_macro": [0.4, 0.5]}}
    report = {"summary": summary([cell])}
    values = report["summary"]["r8 K=8"]
    assert values["supervised F1"] == pytest.approx(0.45) and values["gain F1"] == pytest.approx(0.1)
    assert values["gap closed F1"] == pytest.approx(0.1 / 0.35) and values["selftrain round 0 F1"] == 0.45
    assert values["gain"] == pytest.approx(0.15)  # accuracy keys as before
    lines = summary_lines(report)
    assert "accuracy / macro-F1" in lines[1]
    assert lines[-2] == (  # the cell's row; the last one is the mean over cells
        "| r8 K=8 | 65.0 / 45.0 | 65.0 / 45.0 | 80.0 / 55.0 | - | - | 90.0 / 80.0 | +15.0 / +10.0 | 7.1 "
        "| 60% / 29% |")
    report.update(selftrain_candidate="default", candidates=[
        {"candidate": "default", "val/acc": 0.7, "test/acc": 0.8, "test/f1_macro": 0.55,
         "per_dataset": {"r8": {"test": 0.8, "test macro-F1": 0.55}}},
        {"candidate": "old", "val/acc": 0.6, "test/acc": 0.7, "per_dataset": {}},  # a report without F1
    ])
    table = candidate_lines(report, replace_candidates(VARIANTS["cpu"], ["default", "old"]))
    assert "| default | (the config in conf/) | 70.0 | 80.0 | 55.0 |" in table
    assert "| old | x=1 | 60.0 | 70.0 | - |" in table
    assert any(line.startswith("| default | r8 | 80.0 | 55.0 |") for line in table)


def replace_candidates(variant, names: list[str]):
    from dataclasses import replace

    return replace(variant, candidates={name: [] if name == "default" else ["x=1"] for name in names})
