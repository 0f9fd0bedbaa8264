"""Every shipped profile trains the authors' recipe for a fixed number of steps, never against the clock."""

from __future__ import annotations

import pytest

from regexplain.config import DATASETS, available_profiles, load_config


@pytest.mark.parametrize("profile", available_profiles())
@pytest.mark.parametrize("dataset", DATASETS)
def test_profiles_default_to_the_authors_recipe_and_fixed_steps(profile, dataset):
    cfg = load_config(profile, dataset)
    assert cfg.model.activation == "sigmoid"
    assert cfg.loss.smoothness == "l1_identity"
    assert cfg.train.max_minutes == 0          # no wall-clock limit: results do not depend on the machine
    assert cfg.train.steps >= 1


def test_the_earlier_recipe_stays_selectable():
    cfg = load_config("smoke", "hippocampus", {"model": {"activation": "softplus"},
                                               "loss": {"smoothness": "squared_diff"},
                                               "train": {"max_minutes": 5}})
    assert (cfg.model.activation, cfg.loss.smoothness, cfg.train.max_minutes) == ("softplus", "squared_diff", 5)


def test_a_dataset_without_a_profile_section_gets_its_own_folder_and_labels(tmp_path):
    from regexplain.data.datasets import DATASETS

    profile = tmp_path / "p.yaml"
    profile.write_text("common:\n  train:\n    steps: 3\n")
    for name, spec in DATASETS.items():
        cfg = load_config(profile, name)
        assert cfg.data.root == f"data/{name}" and cfg.data.num_labels == spec.num_labels
        assert cfg.data.n_subjects == spec.synth_count and cfg.train.steps == 3


def test_fast_is_quick_with_half_the_steps_on_a_cosine():
    for dataset, steps in (("hippocampus", 1000), ("lung", 600)):
        fast = load_config("fast", dataset).to_dict()
        quick = load_config("quick", dataset, {"train": {"steps": steps, "lr_schedule": "cosine"}}).to_dict()
        assert fast.pop("profile") == "fast" and quick.pop("profile") == "quick"
        assert fast == quick


def test_extends_merges_a_base_profile_section_by_section(tmp_path):
    from regexplain.config import ConfigError

    (tmp_path / "base.yaml").write_text("common:\n  train:\n    steps: 7\n    lr: 0.002\n"
                                        "lung:\n  train:\n    steps: 9\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ncommon:\n  train:\n    lr: 0.005\n")
    hip, lung = load_config(tmp_path / "child.yaml", "hippocampus"), load_config(tmp_path / "child.yaml", "lung")
    assert (hip.train.steps, hip.train.lr, lung.train.steps, lung.train.lr) == (7, 0.005, 9, 0.005)
    assert hip.profile == "child"
    (tmp_path / "base.yaml").write_text("extends: child.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "child.yaml")
    (tmp_path / "child.yaml").write_text("extends: [quick]\n")
    with pytest.raises(ConfigError, match="'extends' must name one profile"):
        load_config(tmp_path / "child.yaml")
    (tmp_path / "child.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: no such profile"):
        load_config(tmp_path / "child.yaml")
