"""Every config group option composes; typos in keys and options fail with Hydra's clear messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError

from tests.conftest import CONF_DIR, LIST_GROUPS, compose_config

NOT_CONFIG_KEYS = {"hydra", "experiment", "launcher", "hparams_search"}  # groups that set other packages (hydra.*, _global_)
GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in NOT_CONFIG_KEYS)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in group_options(g)], ids=lambda v: str(v)
)
def test_every_group_option_composes(group: str, option: str) -> None:
    """The option composes, and every value its file sets lands under the group's key as written (a wrong
    ``# @package`` line, or a later default overriding it, would move or change it)."""
    from omegaconf import OmegaConf

    value = f"[{option}]" if group in LIST_GROUPS else option
    cfg = compose_config([f"{group}={value}", "paths.output_dir=/tmp/unused"])
    assert cfg[group] is not None
    written = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml"), resolve=False)
    written.pop("defaults", None)
    composed = OmegaConf.to_container(cfg[group], resolve=False)
    for key, expected in leaves(written).items():
        if f"{group}.{key}" == "paths.output_dir":  # set on the command line above
            continue
        node = composed
        for part in key.split("."):
            node = node[part]
        assert node == expected, key


EXPERIMENT_DIR = Path(CONF_DIR) / "experiment"
EXPERIMENTS = sorted(p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for p in EXPERIMENT_DIR.rglob("*.yaml"))


def test_the_experiment_list_is_the_folder() -> None:
    # guards the parametrization below against an empty glob (an empty list would run no case and pass)
    assert {"benchmark/sst2_k8", "benchmark/mr_k8", "ablation/fused_teachers", "ablation/plain_round0"} <= set(
        EXPERIMENTS)


def leaves(node: dict, prefix: str = "") -> dict[str, object]:
    """{"split.pool_size": 1000, ...}: every scalar or list an experiment file sets, by its dotted key."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def defined(cfg, key: str) -> bool:
    """``key`` exists in ``cfg``, or lies under an option that is null by default (e.g. model.classifier.lora.r
    under ``lora: null``)."""
    from omegaconf import OmegaConf

    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        value = OmegaConf.select(cfg, ".".join(parts[:end]), default="<absent>")
        if value != "<absent>":
            return end == len(parts) or value is None
    return False


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_applies_its_values(experiment: str) -> None:
    """Each file of conf/experiment/ composes, and every value and group choice it makes is in the result (it
    comes last in the defaults list, so nothing above it overrides it)."""
    from omegaconf import OmegaConf

    written = OmegaConf.to_container(OmegaConf.load(EXPERIMENT_DIR / f"{experiment}.yaml"))
    choices = {}
    for entry in written.pop("defaults", []):
        ((key, option),) = entry.items()
        choices[key.removeprefix("override /")] = option
    assert choices or written, f"conf/experiment/{experiment}.yaml sets nothing"
    cfg = compose_config([f"experiment={experiment}", "paths.output_dir=/tmp/unused"])
    group_overrides = [f"{g}=[{','.join(o)}]" if isinstance(o, list) else f"{g}={o}" for g, o in choices.items()]
    chosen = compose_config([*group_overrides, "paths.output_dir=/tmp/unused"])  # the same groups, no experiment
    for key, value in leaves(written).items():
        # a config file may add keys (Hydra's struct mode guards the command line only): a typo would pass silently
        assert defined(chosen, key), (
            f"conf/experiment/{experiment}.yaml sets {key}, which no other config defines (a typo?)")
        assert OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, key)}))["v"] == value, key
    for group in choices:
        assert cfg[group] == chosen[group], group


def test_command_line_overrides_win_over_an_experiment() -> None:
    cell = compose_config(["experiment=benchmark/trec6_k8", "split.pool_size=50"])
    assert (cell.task.name, cell.split.labels_per_class, cell.split.pool_size) == ("trec6", 8, 50)


def test_filters_compose_as_a_list() -> None:
    cfg = compose_config(["filters=[confidence,class_balanced]", "filters.confidence.threshold=0.7"])
    assert list(cfg.filters) == ["confidence", "class_balanced"]
    assert cfg.filters.confidence.threshold == 0.7
    assert list(compose_config(["filters=[]"]).filters) == []


def test_unknown_key_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["selftrain.max_roundz=3"])
    assert "max_roundz" in str(err.value.__cause__ or err.value)


def test_unknown_nested_key_is_rejected() -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as err:
        compose_config(["filters.confidence.thresholdd=0.5"])
    assert "thresholdd" in str(err.value.__cause__ or err.value)


def test_unknown_group_option_lists_the_available_ones() -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_config(["hardware=gpux"])
    message = str(err.value)
    assert "gpux" in message and "ddp_cpu" in message


def test_launcher_options_set_hydras_launcher() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        joblib = compose("train", overrides=["launcher=joblib"], return_hydra_config=True)
        local = compose("train", return_hydra_config=True)
    assert "JoblibLauncher" in joblib.hydra.launcher._target_ and joblib.hydra.launcher.n_jobs == 2
    assert "BasicLauncher" in local.hydra.launcher._target_


@pytest.mark.parametrize("override,fix", [
    ("selftrain.calibration=none", "calibration=teachers|temperature|none"),
    ("selftrain.select_round=monitor", "schedule=monitor"),
    ("+selftrain.stage_pseudo_per_class=4", "student_init.pseudo_per_class=N"),
])
def test_a_setting_that_became_a_config_group_is_refused_with_its_new_spelling(override, fix) -> None:
    from alpaca_lightning.errors import ConfigError
    from alpaca_lightning.run_info import refuse_moved_settings

    refuse_moved_settings(["calibration=none", "schedule=monitor", "selftrain.max_rounds=2"])  # today's spellings
    with pytest.raises(ConfigError, match=re.escape(fix)):
        refuse_moved_settings(["seed=1", override])
