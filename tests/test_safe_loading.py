"""Safe loading (issue 12, part 6): tensor files load with weights_only=True, models and tokenizers never run a
folder's own code unless the config says model.trust_remote_code=true."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel, dynamic_module_utils

from alpaca_lightning.assets import REPO_ROOT
from alpaca_lightning.errors import DataError
from alpaca_lightning.models import loading
from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides

PACKAGE = REPO_ROOT / "alpaca_lightning"


def calls(path: Path) -> list[tuple[str, ast.Call]]:
    """(dotted name of the callee, call) for every call in a source file, e.g. ("torch.load", ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            found.append((ast.unparse(node.func), node))
    return found


def keyword(call: ast.Call, name: str) -> object:
    value = next((k.value for k in call.keywords if k.arg == name), None)
    return ast.literal_eval(value) if isinstance(value, ast.Constant) else value


def test_every_load_in_the_package_is_safe() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(REPO_ROOT)
        if "import pickle" in path.read_text() or "from pickle" in path.read_text():
            problems.append(f"{where} imports pickle")
        for callee, call in calls(path):
            if callee == "torch.load" and keyword(call, "weights_only") is not True:
                problems.append(f"{where}:{call.lineno} torch.load without weights_only=True")
            if callee.endswith(".from_pretrained"):  # must go through loading.from_pretrained(loader, path)
                problems.append(f"{where}:{call.lineno} calls {callee} directly")
            if callee.endswith("np.load") and keyword(call, "allow_pickle") not in (None, False):
                problems.append(f"{where}:{call.lineno} np.load with allow_pickle")
    assert not problems, problems


def test_tensor_files_refuse_pickled_objects(tmp_path) -> None:
    torch.save({"weight": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(loading.load_tensors(tmp_path / "ok.pt")["weight"], torch.ones(2))
    torch.save({"weight": torch.ones(2), "payload": Path("/etc/passwd")}, tmp_path / "evil.pt")  # any object
    with pytest.raises(Exception, match="Weights only load failed"):
        loading.load_tensors(tmp_path / "evil.pt")


@pytest.fixture
def remote_code_model(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A model folder whose config asks for its own Python code; running that code writes a marker file."""
    folder, marker = tmp_path / "model", tmp_path / "CODE_RAN"
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    BertModel(config).save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    saved.update(model_type="custom-bert", auto_map={"AutoConfig": "custom.CustomConfig",
                                                     "AutoModel": "custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(saved))
    (folder / "custom.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('the folder ran its own code')\n"
        "from transformers import BertConfig, BertModel\n"
        "class CustomConfig(BertConfig):\n    model_type = 'custom-bert'\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
    )
    # transformers copies remote code into its modules cache: keep that under tmp_path
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder, marker
    loading.set_trust_remote_code(False)
    for name in [n for n in sys.modules if n.startswith("transformers_modules")]:
        del sys.modules[name]


def test_remote_code_does_not_run_by_default(remote_code_model) -> None:
    folder, marker = remote_code_model
    assert loading.trust_remote_code() is False
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        loading.from_pretrained(AutoModel.from_pretrained, folder)
    assert not marker.exists()
    loading.set_trust_remote_code(True)
    model = loading.from_pretrained(AutoModel.from_pretrained, folder)
    assert type(model).__name__ == "CustomModel" and marker.exists()


@pytest.mark.parametrize("model", ["tiny_bert", "minilm", "hub"])
def test_trust_remote_code_is_off_in_every_model_config(model) -> None:
    assert compose_config([f"model={model}"]).model.trust_remote_code is False


@pytest.mark.parametrize("setting", [None, "model.trust_remote_code=true"])
def test_the_run_takes_trust_remote_code_from_its_config_only(tmp_path, setting) -> None:
    loading.set_trust_remote_code(not setting)  # the opposite of what the run must set
    task = {"train": tmp_path / "absent.csv", "test": tmp_path / "absent.csv"}
    overrides = tiny_overrides(task, tmp_path / "out") + ([setting] if setting else [])
    try:
        with pytest.raises(DataError, match="absent.csv"):  # stops at the data, after the policy is set
            run(compose_config(overrides))
        assert loading.trust_remote_code() is bool(setting)
    finally:
        loading.set_trust_remote_code(False)
