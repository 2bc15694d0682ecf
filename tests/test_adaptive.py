"""Issue 13's classifier options on the tiny model: features (pooling, scalar mix, multi-layer pooling) and the
adaptive network (layer-wise learning-rate decay, gradual unfreezing, re-initialised top layers, LoRA)."""

from __future__ import annotations

import csv
import functools
import json
import logging
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader
from transformers import AutoModel

from alpaca_lightning.data.batching import pad_token_rows
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models import optim
from alpaca_lightning.models.backbone import TinyBertBackbone, load_tokenizer
from alpaca_lightning.models.classifier import FEATURE_WEIGHTS, HEAD_CONFIG, SequenceClassifier
from alpaca_lightning.models.features import FeatureExtractor, FeatureSpec, ScalarMix
from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, synthetic_rows, tiny_overrides

LR = 3e-3
LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> str:
    """A 2-layer tiny BERT folder (hidden size 32), as the tiny_bert backbone materialises it."""
    rows = synthetic_rows(200, seed=0)
    return TinyBertBackbone().materialize(tmp_path_factory.mktemp("tiny"), [text for text, _ in rows], seed=0)


def classifier(path: str, **options) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(path, num_labels=2, optimizer=functools.partial(torch.optim.AdamW, lr=LR),
                              dropout=0.0, **options)


def batches(encoder: str, count: int = 4, size: int = 8) -> list[dict]:
    tokenizer = load_tokenizer(encoder)
    rows = synthetic_rows(count * size, seed=1)
    out = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        batch = pad_token_rows(tokenizer([t for t, _ in chunk])["input_ids"], tokenizer.pad_token_id)
        batch["labels"] = torch.tensor([int(label == "pos") for _, label in chunk])
        batch["weights"] = torch.ones(len(chunk))
        out.append({"train": batch})
    return out


def fit(module: SequenceClassifier, encoder: str, epochs: int, tmp_path: Path | None = None,
        callbacks: list[pl.Callback] = ()) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=list(callbacks), log_every_n_steps=1,
        logger=CSVLogger(str(tmp_path), name="fit") if tmp_path else False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches(encoder), batch_size=None))
    return trainer


def logged(trainer: pl.Trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


# --- features -------------------------------------------------------------------------------------------------
# Two texts of 3 positions, hidden size 2; the second text's last two positions and the first's last one are
# padding, filled with values that any pooling reading them would show.
HIDDEN = torch.tensor([[[1.0, 4.0], [3.0, -2.0], [99.0, 99.0]],
                       [[2.0, -1.0], [99.0, 99.0], [99.0, 99.0]]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("pooling, expected", [
    ("mean", [[2.0, 1.0], [2.0, -1.0]]),
    ("max", [[3.0, 4.0], [2.0, -1.0]]),
    ("cls", [[1.0, 4.0], [2.0, -1.0]]),
])
def test_pooling_values_ignore_padding(pooling, expected) -> None:
    extractor = FeatureExtractor(FeatureSpec(pooling=pooling), hidden_size=2, num_hidden_layers=1)
    assert torch.equal(extractor([HIDDEN], MASK), torch.tensor(expected))


def test_attention_pooling_weighs_kept_tokens_by_the_learned_query() -> None:
    extractor = FeatureExtractor(FeatureSpec(pooling="attention"), hidden_size=2, num_hidden_layers=1)
    with torch.no_grad():
        extractor.attention.query.copy_(torch.tensor([0.0, 2.0 ** 0.5]))  # score = second dimension / 1
    # text 1: scores 4 and -2 over its kept tokens -> softmax weights e^6/(1+e^6) and 1/(1+e^6); text 2: one token
    w = torch.sigmoid(torch.tensor(6.0))
    expected = torch.tensor([[w * 1 + (1 - w) * 3, w * 4 + (1 - w) * -2], [2.0, -1.0]])
    assert torch.allclose(extractor([HIDDEN], MASK), expected, atol=1e-6)
    with torch.no_grad():
        extractor.attention.query.zero_()  # equal scores: the mean of the kept tokens
    assert torch.allclose(extractor([HIDDEN], MASK), torch.tensor([[2.0, 1.0], [2.0, -1.0]]))


def test_scalar_mix_and_top_layer_combinations() -> None:
    layers = [HIDDEN, 2 * HIDDEN, 10 * HIDDEN]  # embeddings, layer 1, layer 2
    mean = torch.tensor([[2.0, 1.0], [2.0, -1.0]])
    mix = FeatureExtractor(FeatureSpec(layer_mix="scalar"), hidden_size=2, num_hidden_layers=2)
    with torch.no_grad():
        mix.layer_mix.weights.copy_(torch.log(torch.tensor([0.5, 0.25, 0.25])))
        mix.layer_mix.gamma.fill_(2.0)
    assert torch.allclose(mix(layers, MASK), 2.0 * (0.5 + 0.5 + 2.5) * mean)
    concat = FeatureExtractor(FeatureSpec(top_layers=2), hidden_size=2, num_hidden_layers=2)
    assert torch.equal(concat(layers, MASK), torch.cat([2 * mean, 10 * mean], dim=1))
    assert FeatureSpec(top_layers=2).output_size(2) == 4
    mixed = FeatureExtractor(FeatureSpec(top_layers=2, combine="mix"), hidden_size=2, num_hidden_layers=2)
    assert torch.allclose(mixed(layers, MASK), 6 * mean)  # starts as the plain average of layers 1 and 2


@pytest.mark.parametrize("options, width", [
    ({}, 32), ({"pooling": "max"}, 32), ({"pooling": "attention"}, 32), ({"layer_mix": "scalar"}, 32),
    ({"top_layers": 2}, 64), ({"top_layers": 2, "combine": "mix"}, 32),
])
def test_classifier_feature_width(encoder, options, width) -> None:
    module = classifier(encoder, **options).eval()
    batch = batches(encoder, count=1)[0]["train"]
    assert module.features(batch).shape == (8, width)
    assert module(batch).shape == (8, 2)


def test_scalar_mix_weights_are_learned_and_logged(encoder, tmp_path) -> None:
    module = classifier(encoder, layer_mix="scalar")
    trainer = fit(module, encoder, epochs=1, tmp_path=tmp_path)
    assert not torch.equal(module.extractor.layer_mix.weights.detach(), torch.zeros(3))
    rows = [r for r in logged(trainer) if r.get("features/layer_mix/0")]
    shares = [float(rows[-1][f"features/layer_mix/{i}"]) for i in range(3)]
    assert shares == pytest.approx(module.extractor.layer_mix.shares()) and shares != pytest.approx([1 / 3] * 3)


# --- adaptive network -----------------------------------------------------------------------------------------
def test_llrd_learning_rates_per_layer(encoder) -> None:
    module = classifier(encoder, llrd=0.9, pooling="attention", feature_lr_scale=10)
    config = optim.configure(module, module.optimizer_factory, None, 0.01, 10, lr_scale=module.lr_scale)
    lr_of = {id(p): group["lr"] for group in config["optimizer"].param_groups for p in group["params"]}
    expected = {  # 2 layers: head and top layer at lr, layer 0 at 0.9 lr, embeddings at 0.81 lr; features at 10 lr
        "head.1.weight": 3e-3, "extractor.attention.query": 3e-2, "model.encoder.layer.1.output.dense.weight": 3e-3,
        "model.encoder.layer.0.attention.self.query.weight": 2.7e-3, "model.encoder.layer.0.output.LayerNorm.bias":
        2.7e-3, "model.embeddings.word_embeddings.weight": 2.43e-3, "model.embeddings.LayerNorm.weight": 2.43e-3,
    }
    named = dict(module.named_parameters())
    for name, lr in expected.items():
        assert lr_of[id(named[name])] == pytest.approx(lr), name
    assert len(lr_of) == len(named)  # every parameter is in exactly one group
    plain = classifier(encoder)  # off: the two groups of before, at the optimizer's rate
    groups = optim.configure(plain, plain.optimizer_factory, None, 0.01, 10, lr_scale=plain.lr_scale)
    assert [g["lr"] for g in groups["optimizer"].param_groups] == [LR, LR]


class GradientRecorder(pl.Callback):
    """Which parameters reach the optimizer with a gradient, at each epoch's first step."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, set[str]] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer) -> None:
        self.by_epoch.setdefault(trainer.current_epoch, {
            name for name, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0})


def test_gradual_unfreezing_top_layers_first(encoder) -> None:
    module = classifier(encoder, gradual_unfreezing=1)
    embeddings_before = module.model.embeddings.word_embeddings.weight.detach().clone()
    recorder = GradientRecorder()
    fit(module, encoder, epochs=4, callbacks=[recorder])
    parts = {epoch: {name.split(".")[1] if name.startswith("model.embeddings") else
                     ".".join(name.split(".")[:4]) if name.startswith("model.encoder") else name.split(".")[0]
                     for name in names} for epoch, names in recorder.by_epoch.items()}
    assert parts[0] == {"head"}
    assert parts[1] == {"head", "model.encoder.layer.1"}
    assert parts[2] == {"head", "model.encoder.layer.1", "model.encoder.layer.0"}
    assert parts[3] == {"head", "model.encoder.layer.1", "model.encoder.layer.0", "embeddings"}
    assert not torch.equal(module.model.embeddings.word_embeddings.weight, embeddings_before)  # trained at the end


def test_unfreezing_warns_when_the_fit_is_too_short(encoder, caplog) -> None:
    module = classifier(encoder, gradual_unfreezing=1)
    encoder_before = {k: v.clone() for k, v in module.model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="alpaca_lightning"):
        fit(module, encoder, epochs=1)
    assert "the lowest layers never train" in caplog.text
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in encoder_before.items())  # no update, no decay


def test_reinit_top_layer_only_on_a_plain_encoder(encoder, tmp_path) -> None:
    original = AutoModel.from_pretrained(encoder).state_dict()
    module = classifier(encoder, reinit_layers=1)
    reinit = module.model.state_dict()
    changed = {name for name in original if not name.startswith("pooler") and not torch.equal(original[name],
                                                                                             reinit[name])}
    # every weight matrix of layer 1 is redrawn (LayerNorms and biases restart at 1 and 0, as before), nothing else
    assert changed and all(name.startswith("encoder.layer.1.") for name in changed)
    assert "encoder.layer.1.attention.self.query.weight" in changed
    module.save_pretrained(tmp_path)
    again = classifier(str(tmp_path), reinit_layers=1)  # a classifier folder: trained on, never re-drawn
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in reinit.items())


def test_lora_trains_only_adapters_and_head_and_reports_the_count(encoder, tmp_path, caplog) -> None:
    module = classifier(encoder, lora=LORA)
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("head.") for name in trainable)
    # query and value adapters of 2 layers: 2 x 2 x (A: 8 x 32 + B: 32 x 8), plus the head's 32 x 2 + 2
    assert module.parameter_counts["trainable_parameters"] == 2 * 2 * (8 * 32 + 32 * 8) + 32 * 2 + 2 == 2114
    frozen = {k: v.clone() for k, v in module.model.state_dict().items() if "lora_" not in k}
    with caplog.at_level(logging.INFO, logger="alpaca_lightning"):
        trainer = fit(module, encoder, epochs=1, tmp_path=tmp_path / "logs")
    assert "2,114 of" in caplog.text
    assert float(logged(trainer)[0]["model/trainable_parameters"]) == 2114
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in frozen.items())
    module.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / HEAD_CONFIG).read_text())["trainable_parameters"] == 2114
    merged = AutoModel.from_pretrained(str(tmp_path / "saved")).state_dict()  # a plain encoder, adapters merged
    assert not any("lora" in k for k in merged)
    assert not torch.equal(merged["encoder.layer.0.attention.self.query.weight"],
                           frozen["base_model.model.encoder.layer.0.attention.self.query.base_layer.weight"])


# --- round trips: a round's saved student is the next round's teacher -------------------------------------------
ROUND_TRIP_OPTIONS = [
    {"pooling": "max"}, {"pooling": "attention"}, {"pooling": "cls", "layer_mix": "scalar"},
    {"top_layers": 2}, {"top_layers": 2, "combine": "mix", "pooling": "attention"}, {"llrd": 0.9},
    {"gradual_unfreezing": 1}, {"reinit_layers": 1}, {"lora": LORA},
]


@pytest.mark.parametrize("options", ROUND_TRIP_OPTIONS, ids=lambda o: ",".join(o))
def test_save_and_reload_gives_the_same_predictions(encoder, tmp_path, options) -> None:
    student = classifier(encoder, **options)
    with torch.no_grad():  # learned values far from their initialisation, so a value that is not saved shows
        for name, param in student.named_parameters():
            if name.startswith("extractor.") or "lora_B" in name:
                param.add_(torch.randn_like(param))
    student.save_pretrained(tmp_path)
    batch = batches(encoder, count=1)[0]["train"]
    teacher = classifier(str(tmp_path), **options)
    with torch.no_grad():
        assert torch.allclose(student.eval()(batch), teacher.eval()(batch), atol=1e-5)
    assert (tmp_path / FEATURE_WEIGHTS).is_file()
    # the pooler that the head never reads is saved too: the NSP teacher loads a probe stage's folder with it
    saved_pooler = AutoModel.from_pretrained(str(tmp_path)).pooler.dense.weight
    assert torch.equal(saved_pooler, AutoModel.from_pretrained(encoder).pooler.dense.weight)


def test_a_folder_with_other_feature_settings_is_refused(encoder, tmp_path) -> None:
    classifier(encoder, pooling="attention").save_pretrained(tmp_path)
    with pytest.raises(AlpacaError, match="trained on features"):
        classifier(str(tmp_path), pooling="mean")


# --- validation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"pooling": "sum"}, "pooling must be one of"),
    ({"layer_mix": "elmo"}, "layer_mix must be one of"),
    ({"top_layers": 3}, "encoder has 2 layers"),
    ({"top_layers": 2, "layer_mix": "scalar"}, "cannot be combined"),
    ({"reinit_layers": 3}, "reinit_layers=3, but the encoder has 2 layers"),
    ({"llrd": 1.5}, "llrd=1.5"),
    ({"gradual_unfreezing": 0}, "gradual_unfreezing=0"),
    ({"feature_lr_scale": 0}, "feature_lr_scale=0"),
    ({"reinit_layers": 1, "lora": LORA}, "frozen at random weights"),
])
def test_bad_options_name_the_key(encoder, options, message) -> None:
    with pytest.raises(AlpacaError, match=message):
        classifier(encoder, **options)


def test_lora_without_peft_names_the_fix(encoder, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(AlpacaError, match="pip install peft"):
        classifier(encoder, lora=LORA)


def test_scalar_mix_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="over 3 tensors got 2"):
        ScalarMix(3)([HIDDEN, HIDDEN])


# --- whole runs: probe stage, round 0, a student continued from it, the propagation teacher ------------------------
@pytest.mark.parametrize("options", [
    ["model.classifier.pooling=attention", "model.classifier.layer_mix=scalar", "model.classifier.llrd=0.9",
     "model.classifier.gradual_unfreezing=1", "model.classifier.lora={r:4,alpha:8}"],
    ["model.classifier.top_layers=2", "model.classifier.combine=mix", "model.classifier.reinit_layers=1"],
], ids=["attention,scalar,llrd,unfreezing,lora", "top_layers,mix,reinit"])
def test_options_run_through_stages_and_rounds(synthetic_task, tmp_path, options) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path) + options + [
        "stages=[probe]", "teachers=[classifier,propagation]", "selftrain.max_rounds=1",
        "selftrain.supervised_epochs=3", "selftrain.student_epochs=1",
    ]
    cfg = compose_config(overrides)
    results = run(cfg)
    assert results["rounds_run"] == 2
    spec = {k: cfg.model.classifier[k] for k in ("pooling", "layer_mix", "top_layers", "combine")}
    for folder in (tmp_path / "stages" / "0_probe", tmp_path / "rounds" / "round_0" / "model",
                   tmp_path / "rounds" / "round_1" / "model"):
        saved = json.loads((folder / HEAD_CONFIG).read_text())
        assert {k: saved[k] for k in spec} == spec, folder
        assert not any("lora" in k for k in AutoModel.from_pretrained(str(folder)).state_dict())
    backbone = AutoModel.from_pretrained(str(tmp_path / "backbone")).state_dict()
    probe = AutoModel.from_pretrained(str(tmp_path / "stages" / "0_probe")).state_dict()
    top_changed = not torch.equal(backbone["encoder.layer.1.attention.self.query.weight"],
                                  probe["encoder.layer.1.attention.self.query.weight"])
    assert top_changed == ("model.classifier.reinit_layers=1" in options)  # the probe reads no gradient
