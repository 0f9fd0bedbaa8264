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
