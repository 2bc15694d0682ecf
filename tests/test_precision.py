"""Issue 10's lean step: precision by hardware, bf16 prediction by a cast model, fused AdamW, the throttled bar,
and determinism without torch's NaN fill of uninitialised memory."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from alpaca_lightning import trainer as trainer_module
from alpaca_lightning.console import ThrottledProgressBar
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.optim import with_fused_kernel
from alpaca_lightning.pipeline import run
from alpaca_lightning.precision import cast_weights, cpu_has_bf16, plan_precision, restore_weights
from tests.conftest import compose_config, outcome, tiny_overrides


def test_auto_precision_follows_the_hardware() -> None:
    assert plan_precision("auto", "cpu", cpu_bf16=True).train == "bf16-mixed"
    assert plan_precision("auto", "cpu", cpu_bf16=True).predict_dtype == "bfloat16"
    slow = plan_precision("auto", "cpu", cpu_bf16=False)
    assert (slow.train, slow.predict_dtype) == ("32-true", "float32") and "slower" in slow.reason
    assert plan_precision("auto", "gpu", gpu_bf16=True).train == "bf16-mixed"
    assert plan_precision("auto", "gpu", gpu_bf16=False).train == "32-true"
    # an explicit precision is used as given; mixed ones predict with a cast model
    assert plan_precision("16-mixed", "gpu").predict_dtype == "float16"
    assert plan_precision("32-true", "cpu").predict_dtype == "float32"
    assert plan_precision("bf16-true", "cpu").predict_dtype == "float32"  # already bf16: nothing to cast
    with pytest.raises(AlpacaError, match="hardware.precision=32-true"):
        plan_precision("auto", "tpu")


def test_cpu_bf16_units_are_read_from_the_cpu_flags(tmp_path) -> None:
    with_bf16 = tmp_path / "with"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without = tmp_path / "without"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    if not cpu_has_bf16(with_bf16):
        pytest.skip("not Linux: the flags are not read")
    assert not cpu_has_bf16(without) and not cpu_has_bf16(tmp_path / "missing")


def test_a_cast_for_prediction_gives_back_the_exact_trainable_weights() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 4))
    model[2].weight = model[0].weight  # tied, like an MLM decoder and its embeddings
    model.register_buffer("positions", torch.arange(4))  # an integer buffer stays as it is
    with torch.no_grad():
        model[0].weight.add_(1e-4)  # values that bf16 rounds
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # where Lightning's predict hooks run
        saved = cast_weights(model, torch.bfloat16)
        assert model[0].weight.dtype == model[1].running_mean.dtype == torch.bfloat16
        assert model[2].weight is model[0].weight and model.positions.dtype == torch.int64
        model(torch.randn(2, 4, dtype=torch.bfloat16))
        restore_weights(model, saved)
    assert model[0].weight.dtype == torch.float32 and model[2].weight is model[0].weight
    for name, value in model.state_dict().items():
        assert value.dtype == before[name].dtype and torch.equal(value, before[name]), name
    model.train()
    model(torch.randn(2, 4)).sum().backward()  # not inference tensors: training goes on
    assert model[0].weight.grad is not None


def test_adam_gets_the_fused_kernel_unless_the_config_chose() -> None:
    cpu = torch.device("cpu")
    adamw = functools.partial(torch.optim.AdamW, lr=1e-3)
    assert with_fused_kernel(adamw, cpu).keywords["fused"] is True
    assert "fused" not in with_fused_kernel(adamw, cpu, precision="16-mixed").keywords
    chosen = functools.partial(torch.optim.AdamW, lr=1e-3, foreach=False)
    assert with_fused_kernel(chosen, cpu) is chosen
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    assert with_fused_kernel(sgd, cpu) is sgd


def test_the_progress_bar_redraws_at_most_every_interval(monkeypatch) -> None:
    clock = iter([10.0, 10.1, 10.2, 10.7, 10.8])
    monkeypatch.setattr("alpaca_lightning.console.time.monotonic", lambda: next(clock))
    bar = ThrottledProgressBar(interval=0.5)
    assert [bar._due(i, total=100) for i in range(4)] == [True, False, False, True]
    assert bar._due(99, total=100)  # the last batch always shows


def test_the_progress_bar_draws_on_the_main_thread_without_a_refresh_thread(tmp_path) -> None:
    """Lightning's refresh thread wakes 100 times a second and competes with the compute threads; the bar stops it,
    and still shows every batch by the end of the epoch."""
    import threading

    import pytorch_lightning as pl
    from rich.live import _RefreshThread

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            assert not any(isinstance(t, _RefreshThread) for t in threading.enumerate())
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=4)
    bar = ThrottledProgressBar(interval=0.5)
    pl.Trainer(max_epochs=1, callbacks=[bar], logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
               enable_model_summary=False).fit(Tiny(), data)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert task.completed == task.total == 3


def test_bf16_mixed_run_trains_after_predicting(synthetic_task, tmp_path) -> None:
    """Rounds continue from a model that predicted in bf16: its fp32 weights must be intact and trainable."""
    results = run(compose_config(tiny_overrides(synthetic_task, tmp_path) + ["hardware.precision=bf16-mixed"]))
    assert results["rounds_run"] == 3
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["precision"] == {"train": "bf16-mixed", "predict_dtype": "bfloat16",
                                 "reason": "hardware.precision=bf16-mixed (as configured)"}
    from safetensors.torch import load_file

    for k in range(3):  # each round's model trained on from fp32 weights, not from the bf16 copy it predicted with
        weights = load_file(str(tmp_path / "rounds" / f"round_{k}" / "model" / "model.safetensors"))
        assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}
    before, after = (load_file(str(tmp_path / "rounds" / f"round_{k}" / "model" / "model.safetensors")) for k in (0, 1))
    assert any(not torch.equal(before[name], after[name]) for name in before)  # round 1 trained on


def test_metrics_are_identical_without_the_nan_fill(synthetic_task, tiny_run_once, tmp_path, monkeypatch) -> None:
    """The deterministic mode's NaN fill of new tensors costs time; nothing we run reads uninitialised memory, so
    turning it off (the default, as the shared tiny run ran) must not change a single metric (or pseudo-label)."""
    assert trainer_module.FILL_UNINITIALIZED_MEMORY is False
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", False)
    monkeypatch.setattr(trainer_module, "FILL_UNINITIALIZED_MEMORY", True)
    with_fill = tmp_path / "fill"
    run(compose_config(tiny_overrides(synthetic_task, with_fill)))
    assert torch.utils.deterministic.fill_uninitialized_memory is True  # the run turned the fill on
    assert outcome(with_fill) == outcome(tiny_run_once.out)
    for k in (1, 2):
        assert (with_fill / "rounds" / f"round_{k}" / "pseudo_labels.csv").read_text() == (
            tiny_run_once.out / "rounds" / f"round_{k}" / "pseudo_labels.csv").read_text()
