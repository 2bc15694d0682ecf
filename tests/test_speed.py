"""experiments/speed.py end to end on the tiny model (the code path; its ratios mean nothing here)."""

from __future__ import annotations

import argparse
import json

import pytest

from experiments import speed


@pytest.mark.slow
def test_speed_benchmark_smoke(synthetic_task, tmp_path) -> None:
    overrides = [
        "model=tiny_bert", "task=files", "task.label_names=[neg,pos]",
        f"task.sources.train.path={synthetic_task['train']}", f"task.sources.test.path={synthetic_task['test']}",
        "split.val_size=20", "trainer.enable_progress_bar=false",
    ]
    args = argparse.Namespace(
        out=tmp_path, train_size=64, predict_size=96, test_size=50, repeats=1, train_repeats=1, round_pools=[32, 64],
        sections=["training", "prediction", "rounds", "profile", "pairs"], pairs=2, default_job=None, job_override=[],
        override=overrides, device="cpu",
    )
    assert speed.run(args) == 0
    report = json.loads((tmp_path / "speed.json").read_text())
    rows = {(r["section"], r["path"]): r for r in report["rows"]}
    assert rows[("training", "HF Trainer, group by length, fp32")]["ratio"] == 1.0
    assert {"project fit, 32-true", "project fit, bf16-mixed"} <= {p for s, p in rows if s == "training"}
    bf16 = rows[("prediction", "project predict_split, bfloat16")]
    assert 0.0 <= bf16["argmax_agreement"] <= 1.0 and "ratio" in bf16 and "ratio_2" in bf16
    assert [p for s, p in rows if s == "rounds"] == ["pool 32", "pool 64"]
    for precision in ("32-true", "bf16-mixed"):
        shares = [r["share"] for (s, p), r in rows.items() if s == "profile" and p.startswith(precision + ":")]
        assert len(shares) == 4 and 0 < sum(shares) <= 1 and rows[("profile", f"{precision}: fused AdamW")]["share"] > 0
    matmuls = rows[("profile", "bf16-mixed: matrix products (mm, addmm, bmm)")]["share"]
    ceiling = rows[("profile", "project fit, bf16-mixed, if its matrix products took no time")]["ratio"]
    assert ceiling == pytest.approx(rows[("training", "project fit, bf16-mixed")]["ratio"] / (1 - matmuls), abs=0.01)
    assert "aten::" in (tmp_path / "profile_training.txt").read_text()
    seen = rows[("pairs", "project fit, 32-true, embedding_updates=seen")]
    assert seen["pair_ratio_min"] <= seen["pair_ratio_median"] <= seen["pair_ratio_max"]
    table = (tmp_path / "speed.md").read_text()
    assert "| HF pipeline, fp32 |" in table and "hardware.precision=auto" in table


def test_a_cuda_run_without_a_gpu_is_refused(tmp_path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = argparse.Namespace(out=tmp_path, device="cuda", default_job=None, sections=["prediction"], predict_size=8,
                              round_pools=[], override=[])
    with pytest.raises(SystemExit, match="torch sees no GPU"):
        speed.run(args)
