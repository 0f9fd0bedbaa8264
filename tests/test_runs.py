"""Runs: the main job's model configs and folders, data detection, and the one way to open a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from regexplain import runs
from regexplain.config import ConfigError, load_config
from regexplain.errors import CheckpointError, UsageError


def test_model_config_paths_and_skip(tmp_path):
    noskip = runs.model_config("smoke", "hippocampus_noskip", tmp_path / "d", seed=3)
    skip = runs.model_config("smoke", "hippocampus_skip", tmp_path / "d")
    lung = runs.model_config("smoke", "lung_noskip", tmp_path / "d")
    assert Path(noskip.data.root) == tmp_path / "d" / "smoke" / "hippocampus"
    assert not noskip.model.skip_connections and skip.model.skip_connections
    assert noskip.train.seed == 3 and lung.data.dataset == "lung"
    with pytest.raises(UsageError) as e:
        runs.model_config("smoke", "brain", tmp_path)
    assert str(e.value) == f"unknown model 'brain'; expected one of {sorted(runs.MODELS) + sorted(runs.NETWORKS)}"
    assert {"hippocampus_noskip", "hippocampus_skip", "lung_noskip"} <= set(runs.MODELS)


def test_dataset_present(tmp_path):
    assert not runs.dataset_present(tmp_path / "none")
    (tmp_path / "x" / "imagesTr").mkdir(parents=True)
    assert not runs.dataset_present(tmp_path / "x")
    (tmp_path / "x" / "imagesTr" / "a.nii.gz").write_bytes(b"")
    assert runs.dataset_present(tmp_path / "x")


def test_with_data_validates_and_leaves_the_config_unchanged(tmp_path):
    cfg = load_config("smoke")
    moved = runs.with_data(cfg, root=str(tmp_path), exact_counts=False)
    assert moved.data.root == str(tmp_path) and cfg.data.root != str(tmp_path)
    assert runs.with_data(cfg) is cfg
    with pytest.raises(ConfigError, match="here"):
        runs.with_data(cfg, "here", n_train=-3)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cfg = runs.model_config("smoke", "hippocampus_noskip", root / "data")
    runs.ensure_data(cfg)
    runs.ensure_trained(cfg, runs.run_dir(root / "runs", "smoke", "hippocampus_noskip"))
    return root, cfg


def test_open_run_and_load_run_open_the_same_model_and_data(smoke_run, tmp_path):
    root, cfg = smoke_run
    rd = runs.run_dir(root / "runs", "smoke", "hippocampus_noskip")
    by_name = runs.load_run("smoke", "hippocampus_noskip", root / "runs", root / "data")
    by_path = runs.open_run(rd / "checkpoint.pt", device="cpu", progress=False)
    assert by_name.name == "hippocampus_noskip" and by_path.run_dir == rd and by_path.decomposition is None
    assert by_name.val.ids == by_path.val.ids and by_name.train.ids == by_path.train.ids
    assert by_name.decomposition.n_components == min(cfg.latent.n_components, len(by_name.train.ids) - 1)
    for a, b in zip(by_name.model.state_dict().values(), by_path.model.state_dict().values(), strict=True):
        assert (a == b).all()
    # another folder goes through validated overrides; the checkpoint's config is not changed in place
    import shutil

    shutil.copytree(cfg.data.root, tmp_path / "copy")
    moved = runs.open_run(rd, device="cpu", data={"root": str(tmp_path / "copy"), "exact_counts": False},
                          progress=False)
    assert moved.cfg.data.root == str(tmp_path / "copy") and moved.val.ids == by_path.val.ids
    assert by_path.cfg.data.root == cfg.data.root


def test_load_run_names_an_unfinished_run(tmp_path):
    rd = tmp_path / "runs" / "smoke" / "hippocampus_noskip"
    with pytest.raises(CheckpointError) as e:
        runs.load_run("smoke", "hippocampus_noskip", tmp_path / "runs", tmp_path / "data")
    assert str(e.value) == f"{rd}: no finished training run; run `regexplain reproduce --profile smoke`"
