"""The NER benchmark's code path (experiments/ner_benchmark.py, smoke variant) on the fixture CoNLL-2003 files and,
where ../shared/data is present, on the real ones: supervised grid, two self-training candidates, full supervision,
the table."""

from __future__ import annotations

import json

from experiments.launch import Launch
from experiments.ner_benchmark import run_benchmark


def test_ner_benchmark_smoke_variant(data_root, tmp_path) -> None:
    report = run_benchmark("smoke", tmp_path, Launch(label="ner"), [], None, whole_train=False)
    assert report["failures"] == []
    [cell] = report["cells"]
    assert cell["recipe"] == [3e-3, 4] and len(cell["supervised"]) == 1 and 0 <= cell["supervised"][0] <= 1
    assert set(cell["candidates"]) == {"default", "class_balanced percentile=50", "teachers=[classifier,lexicon]"}
    assert cell["selftrain_candidate"] in cell["candidates"]
    assert list(report["full"]) == ["conll2003_full_pool"]
    table = (tmp_path / "results.md").read_text()
    assert "| 2 | supervised only |" in table and "full supervision" in table
    rounds = json.loads((tmp_path / "runs" / "conll2003_K2_selftrain_s0" / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1] and "test/f1" in rounds[1]
    # a second call reuses every finished run
    again = Launch(label="ner")
    run_benchmark("smoke", tmp_path, again, [], None, whole_train=False)
    assert len(again.reused) == 1 + 3 + 1
