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
