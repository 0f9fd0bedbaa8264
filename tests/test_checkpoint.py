"""Checkpoints: round trip, weights_only loading, clear errors for foreign or damaged files."""

from __future__ import annotations

import pickle

import pytest
import torch

from regexplain.config import load_config
from regexplain.errors import CheckpointError
from regexplain.registration.checkpoint import load_model, read_checkpoint, save_checkpoint
from regexplain.registration.model import RegistrationNet


@pytest.fixture
def cfg():
    return load_config("smoke", "hippocampus")


def _trained_like(cfg) -> tuple[RegistrationNet, torch.optim.Optimizer]:
    torch.manual_seed(1)
    model = RegistrationNet.from_config(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(1, 1, *cfg.data.shape)
    out = model(x, x.flip(2))
    (out.grads_mf.mean() + out.phi_fm.std()).backward()   # a real step: non-zero head, Adam moments
    opt.step()
    return model, opt


def test_round_trip_restores_weights_config_and_optimizer(cfg, tmp_path):
    model, opt = _trained_like(cfg)
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, opt, cfg, 7, {"dice_after": 0.5})
    loaded, cfg2 = load_model(tmp_path / "run")              # a run directory works too
    assert cfg2 == cfg
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    state = read_checkpoint(path)
    assert state["step"] == 7 and state["metrics"] == {"dice_after": 0.5}
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    # the same inputs give the same map
    x = torch.rand(1, 1, *cfg.data.shape)
    assert torch.equal(model.eval()(x, x.flip(3)).phi_mf, loaded(x, x.flip(3)).phi_mf)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]   # no temp file left behind


def test_other_architecture_is_named(cfg, tmp_path):
    model, opt = _trained_like(cfg)
    other = load_config("smoke", "hippocampus", {"model": {"channels": [4, 8, 16]}})
    path = save_checkpoint(tmp_path / "c.pt", model, opt, other, 1)
    with pytest.raises(CheckpointError, match=r"c\.pt.*shape mismatches.*checkpoint \(8,"):
        load_model(path)
    skip = load_config("smoke", "hippocampus", {"model": {"skip_connections": True}})
    save_checkpoint(path, model, opt, skip, 1)
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_model(path)


def test_missing_keys_are_listed(cfg, tmp_path):
    model, opt = _trained_like(cfg)
    path = save_checkpoint(tmp_path / "c.pt", model, opt, cfg, 1)
    state = torch.load(path, weights_only=True)
    del state["model"]["decoder.head.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"c\.pt.*missing keys: decoder\.head\.weight"):
        load_model(path)


def test_damaged_foreign_and_pickled_files_are_refused(tmp_path):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="truncated.pt: cannot read"):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a regexplain checkpoint"):
        load_model(foreign)
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "step": pickle.loads(pickle.dumps(_Custom()))}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: cannot read"):     # weights_only refuses classes
        load_model(evil)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")


class _Custom:
    pass


def test_a_checkpoint_from_before_the_recipe_options_keeps_its_recipe(cfg, tmp_path):
    # stored configs written before model.activation / loss.smoothness existed were trained with softplus
    old = load_config("smoke", "hippocampus", {"model": {"activation": "softplus"},
                                               "loss": {"smoothness": "squared_diff"}})
    model, opt = _trained_like(old)
    path = save_checkpoint(tmp_path / "old.pt", model, opt, old, 3, {})
    state = torch.load(path, weights_only=True)
    del state["config"]["model"]["activation"], state["config"]["loss"]["smoothness"]
    torch.save(state, path)
    loaded, cfg2 = load_model(path)
    assert cfg2.model.activation == "softplus" and cfg2.loss.smoothness == "squared_diff"
    x = torch.rand(1, 1, *old.data.shape)
    assert torch.equal(model.eval()(x, x.flip(3)).phi_mf, loaded(x, x.flip(3)).phi_mf)
    # a current checkpoint keeps what it stored
    new_path = save_checkpoint(tmp_path / "new.pt", *_trained_like(cfg), cfg, 3, {})
    assert load_model(new_path)[1].model.activation == "sigmoid"
