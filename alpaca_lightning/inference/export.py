"""``alpaca-export RUN_DIR OUT --format ...``: a finished run's classifier in a format that other tools load.

    alpaca-export RUN exported/onnx --format onnx --int8     # one ONNX graph + tokenizer.json (+ an int8 copy)
    alpaca-export RUN exported/st --format sentence-transformers   # SentenceTransformer(OUT).encode -> logits
    alpaca-export RUN exported/ner --format transformers     # a token task: AutoModelForTokenClassification
    alpaca-export RUN exported/onnx --format onnx --push-to-hub user/my-model

Formats (one class each, ``EXPORTERS``):

- ``onnx``: encoder, feature (pooling or layer mix) and head as one graph with dynamic batch and length axes,
  outputs ``logits`` and ``probabilities``; ``tokenizer.json`` truncates and pads as the run did. It needs only
  ``onnxruntime`` and ``tokenizers``. ``--int8`` adds ``model_int8.onnx`` (onnxruntime's dynamic quantisation).
  Every head exports.
- ``sentence-transformers`` (sentence classification): Transformer -> Pooling -> Dense (identity activation), so
  ``encode`` returns the logits. Exact for mean, CLS and max pooling of the last layer; attention pooling, a
  layer mix, several pooled layers and sentence pairs have no such module and are refused.
- ``transformers`` (token classification): ``AutoModelForTokenClassification`` with the run's head as its
  ``classifier``; a word's tag is read at its first subword, as the run read it.

Every folder also holds the model card (``README.md``, hub metadata) and ``alpaca_export.json`` (labels, max length,
format). Nothing in it needs alpaca_lightning or ``trust_remote_code``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from alpaca_lightning.artifacts import atomic_directory
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.inference.classifier import run_module
from alpaca_lightning.inference.model_card import write_model_card
from alpaca_lightning.inference.run_folder import TrainedRun, apply_overrides, open_run
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.base import encoder_inputs
from alpaca_lightning.models.loading import from_pretrained
from alpaca_lightning.pipeline import task_kind
from alpaca_lightning.tasks import TokenClassification

ONNX_OPSET = 18
EXTERNAL_DATA_BYTES = 1 << 30  # larger weights go to model.onnx.data (one protobuf holds at most 2 GiB)


class ExportSource:
    """What every format reads: the run, its module (fp32, eval mode, CPU), tokenizer and task kind."""

    def __init__(self, run: TrainedRun) -> None:
        register_resolvers()
        quiet_libraries()
        self.run = run
        # prediction settings of the run, forced to fp32 on the CPU: an export is a float32 graph
        self.cfg = apply_overrides(run.cfg, ["hardware=cpu", "hardware.precision=32-true"], REPO_ROOT / "conf")
        self.kind = task_kind(self.cfg)
        self.is_token_task = isinstance(self.kind, TokenClassification)
        self.module = run_module(run, self.cfg, self.kind).float()
        self.tokenizer = load_tokenizer(str(run.model_dir))
        self.max_length = int(self.cfg.data.max_length)
        self.pairs = len(self.cfg.task.get("text_columns") or []) == 2

    @property
    def pipeline_tag(self) -> str:
        return "token-classification" if self.is_token_task else "text-classification"

    def input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        return names + ["token_type_ids"] if "token_type_ids" in self.tokenizer.model_input_names else names

    def record(self, fmt: str, **extra: Any) -> dict[str, Any]:
        return {"format": fmt, "task": self.pipeline_tag, "label_names": self.run.label_names,
                "max_length": self.max_length, "text_pairs": self.pairs, "round": self.run.round_index, **extra}


class Exporter:
    name = ""
    library = ""  # the model card's library_name

    def check(self, source: ExportSource) -> None:
        """Refuse, before writing anything, a model this format cannot hold exactly."""

    def write(self, source: ExportSource, out: Path, options: argparse.Namespace) -> dict[str, Any]:
        raise NotImplementedError

    def usage(self, source: ExportSource) -> str:
        raise NotImplementedError


# --- ONNX ---------------------------------------------------------------------------------------------------------
class ProbabilityGraph(torch.nn.Module):
    """The classifier as tensors in, (logits, probabilities) out: per text, or per token for a token task."""

    def __init__(self, module: torch.nn.Module, per_token: bool) -> None:
        super().__init__()
        self.module = module
        self.per_token = per_token

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        if self.per_token:  # every position; a word's tag is read at its first subword
            logits = self.module.head(self.module.model(**encoder_inputs(batch)).last_hidden_state)
        else:
            logits = self.module(batch)
        return logits, torch.softmax(logits.float(), dim=-1)


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def sample_inputs(source: ExportSource) -> tuple[torch.Tensor, ...]:
    texts = ["an example to trace the graph with", "a second, longer example to trace the graph with here"]
    encoded = source.tokenizer(texts, padding=True, truncation=True, max_length=source.max_length,
                               return_tensors="pt")
    return tuple(encoded[name] for name in source.input_names())


def tokenizer_json(source: ExportSource, out: Path) -> None:
    """``tokenizer.json`` that truncates to the run's max length and pads a batch, as the run tokenized."""
    backend = source.tokenizer.backend_tokenizer
    backend.enable_truncation(max_length=source.max_length)
    backend.enable_padding(pad_id=source.tokenizer.pad_token_id, pad_token=source.tokenizer.pad_token)
    backend.save(str(out / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()


class OnnxExporter(Exporter):
    name = "onnx"
    library = "onnx"

    def write(self, source: ExportSource, out: Path, options: argparse.Namespace) -> dict[str, Any]:
        graph = ProbabilityGraph(source.module, source.is_token_task).eval()
        names = source.input_names()
        axes = {name: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=source.max_length)}
                for name in names}
        with torch.no_grad():
            torch.onnx.export(graph, sample_inputs(source), str(out / "model.onnx"), input_names=names,
                              output_names=["logits", "probabilities"], dynamic_shapes=axes, dynamo=True,
                              opset_version=ONNX_OPSET, verbose=False,
                              external_data=parameter_bytes(graph) > EXTERNAL_DATA_BYTES)
        source.tokenizer.save_pretrained(str(out))  # tokenizer_config.json etc. for transformers users
        tokenizer_json(source, out)
        files = ["model.onnx"]
        if options.int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(out / "model.onnx"), str(out / "model_int8.onnx"), weight_type=QuantType.QInt8)
            files.append("model_int8.onnx")
        return source.record("onnx", inputs=names, outputs=["logits", "probabilities"], files=files)

    def usage(self, source: ExportSource) -> str:
        token_note = ("\n# probabilities: (batch, tokens, labels); read each word at its first token "
                      "(encoding.word_ids)" if source.is_token_task else "")
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        inputs = ",\n          ".join(f'"{name}": np.array([e.{fields[name]} for e in encodings], dtype=np.int64)'
                                       for name in source.input_names())
        return f"""```python
import numpy as np, onnxruntime, tokenizers

tokenizer = tokenizers.Tokenizer.from_file("tokenizer.json")   # truncates to {source.max_length}, pads the batch
session = onnxruntime.InferenceSession("model.onnx")
encodings = tokenizer.encode_batch(["first text", "second text"])
inputs = {{{inputs}}}
logits, probabilities = session.run(None, inputs){token_note}
labels = {source.run.label_names}
```"""


# --- sentence-transformers ------------------------------------------------------------------------------------------
class SentenceTransformersExporter(Exporter):
    name = "sentence-transformers"
    library = "sentence-transformers"
    poolings = ("mean", "cls", "max")

    def check(self, source: ExportSource) -> None:
        spec = source.module.spec
        reasons = []
        if source.is_token_task:
            reasons.append("it is a token classifier (use --format transformers)")
        if source.pairs:
            reasons.append("it reads sentence pairs, which SentenceTransformer.encode does not take")
        if spec.pooling not in self.poolings or spec.reads_all_layers:
            reasons.append(f"its feature {spec.to_dict()} is not one Pooling module over the last layer (exact for "
                           f"pooling {list(self.poolings)} with layer_mix=last and top_layers=1)")
        if reasons:
            raise AlpacaError(f"--format sentence-transformers cannot hold this classifier exactly: "
                              f"{'; '.join(reasons)}. Use --format onnx, which exports every head.")

    def write(self, source: ExportSource, out: Path, options: argparse.Namespace) -> dict[str, Any]:
        modules = st_modules()
        transformer = modules.Transformer(str(source.run.model_dir), max_seq_length=source.max_length)
        hidden = source.module.model.config.hidden_size
        pooling = modules.Pooling(hidden, pooling_mode=source.module.spec.pooling)
        linear = source.module.head[-1]
        dense = modules.Dense(hidden, linear.out_features, bias=True, activation_function=torch.nn.Identity(),
                              init_weight=linear.weight.detach().clone(), init_bias=linear.bias.detach().clone())
        from sentence_transformers import SentenceTransformer

        SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(out))
        return source.record("sentence-transformers", outputs="logits (softmax them for probabilities)")

    def usage(self, source: ExportSource) -> str:
        return f"""```python
import torch
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder")
logits = model.encode(["first text", "second text"], convert_to_tensor=True)
probabilities = torch.softmax(logits, dim=-1)
labels = {source.run.label_names}
```"""


def st_modules() -> Any:
    try:
        from sentence_transformers.sentence_transformer import modules  # sentence-transformers 6
    except ImportError:
        try:
            from sentence_transformers import models as modules  # sentence-transformers 3 to 5
        except ImportError:
            raise AlpacaError("--format sentence-transformers needs sentence-transformers: pip install "
                              "'alpaca-lightning[export]'.") from None
    return modules


# --- transformers (token classification) ---------------------------------------------------------------------------
class TransformersTokenExporter(Exporter):
    name = "transformers"
    library = "transformers"

    def check(self, source: ExportSource) -> None:
        if not source.is_token_task:
            raise AlpacaError(
                "--format transformers holds token classifiers (AutoModelForTokenClassification). No transformers "
                "sequence-classification class computes this run's head exactly (theirs add a pooler layer); use "
                "--format sentence-transformers (mean, CLS or max pooling) or --format onnx (every head)."
            )

    def write(self, source: ExportSource, out: Path, options: argparse.Namespace) -> dict[str, Any]:
        from transformers import AutoModelForTokenClassification

        labels = source.run.label_names
        model = from_pretrained(
            AutoModelForTokenClassification.from_pretrained, str(source.run.model_dir), num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
        )
        linear = source.module.head[-1]
        target = getattr(model, "classifier", None)
        if not isinstance(target, torch.nn.Linear) or target.weight.shape != linear.weight.shape:
            raise AlpacaError(f"{type(model).__name__} has no linear `classifier` of shape {tuple(linear.weight.shape)}"
                              f" to hold the head; use --format onnx.")
        with torch.no_grad():
            target.weight.copy_(linear.weight)
            target.bias.copy_(linear.bias)
        model.save_pretrained(str(out))
        source.tokenizer.save_pretrained(str(out))
        return source.record("transformers", reads_word_at="first subword")

    def usage(self, source: ExportSource) -> str:
        return """```python
from transformers import pipeline

tagger = pipeline("token-classification", model="path/to/this/folder", aggregation_strategy="first")
tagger("Ada Lovelace worked in London .")
```"""


EXPORTERS: dict[str, type[Exporter]] = {
    exporter.name: exporter for exporter in (OnnxExporter, SentenceTransformersExporter, TransformersTokenExporter)
}


def export(run_dir: Path, out: Path, fmt: str, options: argparse.Namespace) -> Path:
    """Write the folder ``out`` (complete or absent) in format ``fmt``, with its model card."""
    if fmt not in EXPORTERS:
        raise AlpacaError(f"--format {fmt}: choose one of {sorted(EXPORTERS)}.")
    exporter = EXPORTERS[fmt]()
    source = ExportSource(open_run(run_dir, options.round_index))
    exporter.check(source)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise AlpacaError(f"{out} exists and is not empty; choose another folder or pass --overwrite.")
    with atomic_directory(out) as tmp:
        record = exporter.write(source, tmp, options)
        (tmp / "alpaca_export.json").write_text(json.dumps(record, indent=2) + "\n")
        write_model_card(source.run, tmp, exporter.library, source.pipeline_tag, exporter.usage(source))
    return out


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload ``folder`` to the hub repository ``repo_id`` (created if needed); needs the network and a token."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="alpaca-export")
    return f"https://huggingface.co/{repo_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpaca-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished alpaca-train run folder (holds results.json)")
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS), dest="fmt")
    parser.add_argument("--round", type=int, dest="round_index", help="a kept round's model (default: the reported)")
    parser.add_argument("--int8", action="store_true", help="onnx: also write model_int8.onnx (dynamic quantisation)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    parser.add_argument("--push-to-hub", metavar="REPO", help="then upload OUT to this hub repository")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    args = parser.parse_args(argv)
    try:
        out = export(args.run_dir, args.out, args.fmt, args)
        print(f"alpaca-export: {args.fmt} model and model card in {out}")
        if args.push_to_hub:
            print(f"alpaca-export: pushed to {push_to_hub(out, args.push_to_hub, args.private)}")
    except AlpacaError as err:
        print(f"alpaca-export: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
