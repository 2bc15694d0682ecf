"""Using a finished run: ``alpaca_lightning.load``, ``alpaca-predict`` and ``alpaca-export``.

The run is ``tiny_run_once`` (conftest): its reported round's test predictions, saved by the run, are the reference
that every path here must reproduce. Exported folders are loaded in a fresh virtual environment that cannot import
alpaca_lightning (``without_package``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import alpaca_lightning
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.inference import export as export_module
from alpaca_lightning.inference.export import export
from alpaca_lightning.inference.predict_files import main as predict_main
from tests.conftest import synthetic_rows, write_csv

EXPORT_DEFAULTS = dict(round_index=None, int8=False, overwrite=False)


def run_test_frame(run) -> pd.DataFrame:
    return pd.read_csv(run.cfg.task.sources.test.path, dtype=str, keep_default_na=False)


def reported_test_probs(run) -> np.ndarray:
    return np.load(run.out / "rounds" / f"round_{run.results['best_round']}" / "predictions.npz")["test"]


@pytest.fixture(scope="module")
def classifier(tiny_run_once):
    return alpaca_lightning.load(tiny_run_once.out)


@pytest.fixture(scope="module")
def many_texts() -> list[str]:
    """2,000 sentences the run never saw."""
    return [text for text, _ in synthetic_rows(2000, seed=7)]


# --- the Python API -------------------------------------------------------------------------------------------------
def test_load_predicts_what_the_run_predicted_for_its_test_set(tiny_run_once, classifier) -> None:
    frame = run_test_frame(tiny_run_once)
    probs = classifier.predict_proba(frame["text"].tolist())
    np.testing.assert_allclose(probs, reported_test_probs(tiny_run_once), atol=1e-6)
    accuracy = np.mean(np.array(classifier.predict(frame["text"].tolist())) == frame["label"].to_numpy())
    assert accuracy == pytest.approx(tiny_run_once.results["best"]["test/acc"], abs=1e-6)
    assert classifier.label_names == ["neg", "pos"] and classifier.run.is_reported_round


def test_load_refuses_what_it_cannot_predict(tiny_run_once, tmp_path, classifier) -> None:
    with pytest.raises(AlpacaError, match="not finished: it has no results.json"):
        alpaca_lightning.load(tmp_path)
    with pytest.raises(AlpacaError, match="Round 7 did not run"):
        alpaca_lightning.load(tiny_run_once.out, round_index=7)
    with pytest.raises(AlpacaError, match="has no key 'data.predict_batchsize'"):
        alpaca_lightning.load(tiny_run_once.out, overrides=["data.predict_batchsize=8"])
    with pytest.raises(AlpacaError, match="hardware=gpux: no such option"):
        alpaca_lightning.load(tiny_run_once.out, overrides=["hardware=gpux"])
    with pytest.raises(DataError, match=r"empty text \(rows \[1\]"):
        classifier.predict(["fine", "  "])


# --- alpaca-predict -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_alpaca_predict_writes_every_row_in_order_with_probabilities(tiny_run_once, classifier, tmp_path, suffix,
                                                                     capsys) -> None:
    frame = run_test_frame(tiny_run_once).assign(extra=lambda f: range(len(f)))
    source = tmp_path / f"texts{suffix}"
    write_table(frame, source)
    assert predict_main([str(tiny_run_once.out), str(source), "--chunk-size", "17"]) == 0
    out = read_table(tmp_path / f"texts.predictions{suffix}")
    assert list(out["extra"].astype(int)) == list(range(len(frame)))  # input order and columns kept
    np.testing.assert_allclose(out[["probability_neg", "probability_pos"]].to_numpy(float),
                               reported_test_probs(tiny_run_once), atol=1e-6)
    assert (out["predicted_label"] == np.array(["neg", "pos"])[reported_test_probs(tiny_run_once).argmax(1)]).all()
    printed = capsys.readouterr().out
    assert f"{100 * tiny_run_once.results['best']['test/acc']:.1f}%" in printed, printed
    assert not (tmp_path / f"texts.predictions{suffix}.parts").exists()


def test_alpaca_predict_with_two_processes_matches_one(tiny_run_once, tmp_path) -> None:
    source = write_csv(tmp_path / "texts.csv", [(t, "pos") for t, _ in synthetic_rows(90, seed=3)])
    single, double = tmp_path / "one.csv", tmp_path / "two.csv"
    common = [str(tiny_run_once.out), str(source), "--chunk-size", "40", "hardware.precision=32-true"]
    assert predict_main([*common, "-o", str(single)]) == 0
    assert predict_main([*common, "-o", str(double), "hardware=ddp_cpu"]) == 0
    assert double.read_bytes() == single.read_bytes()
    # strategy=ddp launches the command once per process (as on a GPU cluster): every process reads, rank 0 writes
    launched = tmp_path / "launched.csv"
    done = subprocess.run([sys.executable, "-m", "alpaca_lightning.inference.predict_files", *common, "-o",
                           str(launched), "hardware=ddp_cpu", "hardware.strategy=ddp"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert launched.read_bytes() == single.read_bytes()


@pytest.mark.parametrize("content, name, message", [
    ("review,label\nfine,pos\n", "texts.csv", r"Text column\(s\) \['text'\] are not in the input"),
    ("text,label\nfine,pos\n\"\",neg\n", "texts.csv", r"empty text \(rows \[1\]"),
    ("text,label\nfine,pos\nbad,meh\n", "texts.csv", r"Label 'meh' in column 'label' \(row 1\) is not one of"),
    ("text,label\nfine,pos\n", "texts.parquet", "is not a parquet file"),
    ('{"text": "fine"}\nnot json\n', "texts.jsonl", "line 2 is not valid JSON"),
    ("text\n", "texts.csv", "holds no rows"),
    ("text\tlabel\nfine\tpos\n", "texts.txt", "Cannot tell the format"),
    ("text,predicted_label\nfine,pos\n", "texts.csv", r"already has column\(s\) \['predicted_label'\]"),
])
def test_alpaca_predict_names_bad_input_and_writes_nothing(tiny_run_once, tmp_path, capsys, content, name,
                                                          message) -> None:
    source = tmp_path / name
    source.write_text(content)
    assert predict_main([str(tiny_run_once.out), str(source), "-o", str(tmp_path / "out.csv")]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not (tmp_path / "out.csv").exists()


def test_alpaca_predict_refuses_an_unfinished_run_and_a_round_not_kept(tiny_run_once, tmp_path, capsys) -> None:
    source = write_csv(tmp_path / "texts.csv", [("fine", "pos")])
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config_resolved.yaml").write_text((tiny_run_once.out / "config_resolved.yaml").read_text())
    assert predict_main([str(tmp_path / "half"), str(source)]) == 2
    assert "is not finished" in capsys.readouterr().err
    assert predict_main([str(tiny_run_once.out), str(tmp_path / "absent.csv")]) == 2
    assert "Input file not found" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run_once.out, copy)
    (copy / "rounds" / "round_0" / "model" / "COMPLETE").unlink()
    assert predict_main([str(copy), str(source), "--round", "0"]) == 2
    assert "The model of round 0 is not kept" in capsys.readouterr().err

def test_stale_chunks_of_another_input_are_not_reused(tiny_run_once, tmp_path) -> None:
    source = write_csv(tmp_path / "texts.csv", [(t, l) for t, l in synthetic_rows(30, seed=4)])
    out = tmp_path / "out.csv"
    parts = out.with_name("out.csv.parts")
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"input": "another file"}))
    (parts / "part-000000.csv").write_text("text,label\nstale,neg\n")
    assert predict_main([str(tiny_run_once.out), str(source), "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 30 and "stale" not in out.read_text()


# --- alpaca-export ----------------------------------------------------------------------------------------------
def without_package(script: str, folder: Path, tmp_path: Path) -> dict:
    """Run ``script`` in a fresh virtual environment that has this environment's libraries on its path but not
    alpaca_lightning (site-packages on PYTHONPATH: its .pth files, the editable install among them, are not
    read), from ``folder``; the script's ``result`` dict comes back as JSON."""
    fresh = tmp_path / "fresh-venv"
    if not fresh.exists():
        venv.EnvBuilder(with_pip=False).create(fresh)
    site = [p for p in sys.path if p.endswith("site-packages")]
    guard = textwrap.dedent("""
        import importlib.util, json, sys
        assert importlib.util.find_spec("alpaca_lightning") is None, "alpaca_lightning is importable"
    """)
    tail = "\nassert 'alpaca_lightning' not in sys.modules\nprint('RESULT=' + json.dumps(result))\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": os.pathsep.join(site)}
    done = subprocess.run([str(fresh / "bin" / "python"), "-c", guard + textwrap.dedent(script) + tail], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT=")[-1])


def test_onnx_export_matches_the_fp32_path_without_the_package(tiny_run_once, many_texts, tmp_path) -> None:
    out = export(tiny_run_once.out, tmp_path / "onnx", "onnx", argparse_namespace(int8=True))
    reference = alpaca_lightning.load(tiny_run_once.out, overrides=["hardware.precision=32-true"])
    expected = reference.predict_proba(many_texts)
    (out / "texts.json").write_text(json.dumps(many_texts))
    result = without_package("""
        import numpy as np, onnxruntime, tokenizers
        texts = json.load(open("texts.json"))
        tokenizer = tokenizers.Tokenizer.from_file("tokenizer.json")
        result = {}
        for name in ("model.onnx", "model_int8.onnx"):
            session = onnxruntime.InferenceSession(name)
            probs = []
            for start in range(0, len(texts), 256):
                encodings = tokenizer.encode_batch(texts[start:start + 256])
                inputs = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                          "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                          "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
                probs.append(session.run(["probabilities"], inputs)[0])
            result[name] = np.concatenate(probs).tolist()
    """, out, tmp_path)
    probs = np.array(result["model.onnx"])
    assert len(probs) == 2000
    assert (probs.argmax(1) == expected.argmax(1)).all()
    assert np.abs(probs - expected).max() < 1e-4
    assert np.mean(np.array(result["model_int8.onnx"]).argmax(1) == expected.argmax(1)) > 0.9  # int8: close
    record = json.loads((out / "alpaca_export.json").read_text())
    assert record["label_names"] == ["neg", "pos"] and record["max_length"] == tiny_run_once.cfg.data.max_length


def test_sentence_transformers_export_matches_the_fp32_path_without_the_package(tiny_run_once, many_texts,
                                                                                 tmp_path) -> None:
    out = export(tiny_run_once.out, tmp_path / "st", "sentence-transformers", argparse_namespace())
    expected = alpaca_lightning.load(tiny_run_once.out, overrides=["hardware.precision=32-true"]).predict_proba(
        many_texts)
    (out / "texts.json").write_text(json.dumps(many_texts))
    result = without_package("""
        import torch
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(".", device="cpu")
        logits = model.encode(json.load(open("texts.json")), convert_to_tensor=True, batch_size=256)
        result = {"probs": torch.softmax(logits, dim=-1).tolist()}
    """, out, tmp_path)
    probs = np.array(result["probs"])
    assert (probs.argmax(1) == expected.argmax(1)).all() and np.abs(probs - expected).max() < 1e-4


def test_the_model_card_says_what_trained_the_model_and_how_well(tiny_run_once, tmp_path) -> None:
    out = export(tiny_run_once.out, tmp_path / "st", "sentence-transformers", argparse_namespace())
    text = (out / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "text-classification"
    test_metrics = {m["name"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert test_metrics["test accuracy"] == round(tiny_run_once.results["best"]["test/acc"], 4)
    labelled = tiny_run_once.results["splits"]["labelled"]
    pseudo = json.loads((tiny_run_once.out / "rounds.json").read_text())[-1]["pseudo/count"]
    assert f"gold labels: {labelled} labelled examples" in text and f"pseudo-labels: {pseudo} from" in text
    assert (out / "alpaca_config.yaml").read_text() == (tiny_run_once.out / "config_resolved.yaml").read_text()


def test_push_to_hub_uploads_the_exported_folder(tiny_run_once, tmp_path, monkeypatch) -> None:
    """Tested against a local folder: a stand-in for HfApi copies what would be uploaded."""
    uploaded = tmp_path / "hub"

    class LocalHub:
        def create_repo(self, repo_id, private, exist_ok):
            (uploaded / repo_id).mkdir(parents=True, exist_ok=exist_ok)

        def upload_folder(self, folder_path, repo_id, commit_message):
            shutil.copytree(folder_path, uploaded / repo_id, dirs_exist_ok=True)

    monkeypatch.setattr("huggingface_hub.HfApi", LocalHub)
    assert export_module.main([str(tiny_run_once.out), str(tmp_path / "st"), "--format", "sentence-transformers",
                               "--push-to-hub", "me/tiny"]) == 0
    assert (uploaded / "me" / "tiny" / "README.md").read_text() == (tmp_path / "st" / "README.md").read_text()


def test_export_refuses_heads_a_format_cannot_hold(tiny_run_once, tmp_path, capsys) -> None:
    assert export_module.main([str(tiny_run_once.out), str(tmp_path / "tf"), "--format", "transformers"]) == 2
    assert "holds token classifiers" in capsys.readouterr().err and not (tmp_path / "tf").exists()

    class AttentionPooled:
        is_token_task, pairs = False, False
        module = type("M", (), {"spec": alpaca_lightning.models.features.FeatureSpec(pooling="attention")})()

    with pytest.raises(AlpacaError, match="Use --format onnx"):
        export_module.SentenceTransformersExporter().check(AttentionPooled())
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(AlpacaError, match="not empty"):
        export(tiny_run_once.out, tmp_path / "full", "onnx", argparse_namespace())


# --- helpers ----------------------------------------------------------------------------------------------------
def argparse_namespace(**options):
    import argparse
    return argparse.Namespace(**{**EXPORT_DEFAULTS, **options})


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")


# --- alpaca-serve ---------------------------------------------------------------------------------------------------
def test_alpaca_serve_answers_concurrent_http_requests(tiny_run_once, classifier, tmp_path) -> None:
    """A LitServe server on localhost (batches of up to 8): the health route, concurrent requests answered with
    the API's probabilities, and a malformed request refused with 422."""
    import socket
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "alpaca_lightning.inference.serve", str(tiny_run_once.out),
                               "--port", str(port), "--max-batch-size", "8", "--batch-timeout", "0.05"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def post(payload: dict) -> dict:
        request = urllib.request.Request(f"{base}/predict", json.dumps(payload).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    try:
        wait_for_health(f"{base}/health", server, tmp_path / "serve.log")
        texts = run_test_frame(tiny_run_once)["text"].tolist()[:24]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda text: post({"text": text}), texts))
        expected = classifier.predict_proba(texts)
        served = np.array([[a["probabilities"]["neg"], a["probabilities"]["pos"]] for a in answers])
        np.testing.assert_allclose(served, expected, atol=1e-6)
        assert [a["label"] for a in answers] == classifier.predict(texts)
        with pytest.raises(urllib.error.HTTPError) as refused:
            post({"txt": "no text key"})
        assert refused.value.code == 422
    finally:
        stop_process_group(server)
        log.close()


def stop_process_group(process: subprocess.Popen) -> None:
    """The server and its LitServe workers: SIGTERM to the group, SIGKILL if it lingers."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
        try:  # the parent is gone; its workers may not be
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def wait_for_health(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server never became healthy: {log.read_text()[-3000:]}")


def test_the_console_scripts_are_installed() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    for script in ("alpaca-predict", "alpaca-export", "alpaca-serve"):
        assert (Path(sys.executable).parent / script).is_file(), f"{script} is not installed"
        assert callable(scripts[script].load())
