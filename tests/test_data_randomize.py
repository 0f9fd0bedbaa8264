"""Domain randomisation (regexplain.data.randomize) against numpy / scipy references, and its place in a
training step: the network sees randomised volumes, the loss the volumes themselves."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from regexplain.config import RandomizeConfig, load_config
from regexplain.data import preprocess
from regexplain.data import randomize as rz
from regexplain.registration.train import _draw_batch


def _volumes(n=3, shape=(12, 10, 14), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, *shape), generator=g)
    return x


def test_transfer_is_numpy_interp_through_the_knots():
    x = _volumes()
    levels = torch.rand((3, 7), generator=torch.Generator().manual_seed(1))
    out = rz.transfer(x, levels)
    knots = np.linspace(0, 1, 7)
    for i in range(3):
        ref = np.interp(x[i].numpy(), knots, levels[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-6)
    # equally spaced levels from 0 to 1: the identity
    np.testing.assert_allclose(rz.transfer(x, torch.linspace(0, 1, 5).expand(3, 5)).numpy(), x.numpy(), atol=1e-6)


def test_blur_is_scipy_gaussian_filter_per_volume():
    x = _volumes()
    sigma = torch.tensor([0.0, 0.6, 1.0])
    out = rz.gaussian_blur(x, sigma, radius=3)
    np.testing.assert_allclose(out[0].numpy(), x[0].numpy(), atol=1e-7)      # sigma 0: unchanged
    for i in (1, 2):
        s = float(sigma[i])
        ref = ndimage.gaussian_filter(x[i, 0].double().numpy(), s, mode="nearest", truncate=3 / s + 1e-9)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5)


def test_normalize_matches_the_preprocessing_and_masks():
    x = _volumes() * 7 - 2
    x[1, 0, 0, 0, 0] = 500.0                     # an outlier the clip must catch
    out = rz.normalize(x)
    for i in range(3):
        np.testing.assert_allclose(out[i, 0].numpy(), preprocess.normalize(x[i, 0].numpy()), atol=1e-5)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, :, 2:9, 3:7, 1:12] = True
    out = rz.normalize(x, mask)
    for i in range(3):
        inside = x[i, 0][mask[i, 0]].numpy()
        np.testing.assert_allclose(out[i, 0][mask[i, 0]].numpy(), preprocess.normalize(inside), atol=1e-5)
        assert (out[i, 0][~mask[i, 0]] == 0).all()


def test_crop_boxes_are_centred_with_the_drawn_sides():
    shape = (32, 32, 32)
    box = rz.crop_boxes(200, shape, (0.5, 0.75, 0.5), (0.9, 0.95, 0.8), 0.7, torch.Generator().manual_seed(2))
    used = ~box.flatten(1).all(1)
    assert 0.6 < used.float().mean() < 0.8                        # the probability
    for b in box[used]:
        for ax, (lo, hi) in enumerate(((0.5, 0.9), (0.75, 0.95), (0.5, 0.8))):
            line = b[0].any(dim=tuple(a for a in range(3) if a != ax)).numpy()
            idx = np.flatnonzero(line)
            assert idx[0] + idx[-1] == shape[ax] - 1                 # centred
            assert lo * shape[ax] - 2 <= len(idx) <= hi * shape[ax] + 1
        assert b[0].sum() == np.prod([b[0].any(dim=tuple(a for a in range(3) if a != ax)).sum() for ax in range(3)])


def test_randomize_draws_for_the_whole_batch_so_a_share_is_the_same():
    x = _volumes(6, (16, 16, 16))
    cfg = RandomizeConfig(enabled=True, crop_prob=0.5)
    full = rz.randomize(x, cfg, torch.Generator().manual_seed(3))
    sel = torch.tensor([1, 4])
    part = rz.randomize(x, cfg, torch.Generator().manual_seed(3), select=sel)
    np.testing.assert_allclose(part.numpy(), full[sel].numpy(), atol=1e-6)
    assert full.min() >= 0 and full.max() <= 1 + 1e-6
    # every volume looks different from its input, and from the same input randomised again
    again = rz.randomize(x, cfg, torch.Generator().manual_seed(4))
    assert (full - x).abs().mean() > 0.05 and (full - again).abs().mean() > 0.05
    # nothing randomised, no box: the paper's normalisation of the input only
    none = rz.randomize(x, dataclasses.replace(cfg, prob=0.0, crop_prob=0.0), torch.Generator().manual_seed(3))
    np.testing.assert_allclose(none.numpy(), rz.normalize(x).numpy(), atol=1e-6)


def test_per_pair_volumes_share_their_contrast_and_the_ramp_starts_from_none():
    x = _volumes(4, (16, 16, 16))
    x[2:] = x[:2]                                  # each moving volume equals its fixed one
    cfg = RandomizeConfig(enabled=True, prob=1.0, per_pair=True, noise_max=0.0, bias_sd=0.0, crop_prob=0.0)
    out = rz.randomize(x, cfg, torch.Generator().manual_seed(6))
    np.testing.assert_allclose(out[:2].numpy(), out[2:].numpy(), atol=1e-6)       # same transfer, blur, gamma
    assert (out[0] - out[1]).abs().mean() > 0.05
    alone = rz.randomize(x, dataclasses.replace(cfg, per_pair=False), torch.Generator().manual_seed(6))
    assert (alone[0] - alone[2]).abs().mean() > 0.05                              # drawn per volume
    with pytest.raises(ValueError, match="even"):
        rz.randomize(x[:3], cfg)
    ramped = dataclasses.replace(cfg, ramp_steps=100)
    assert [rz.ramp(ramped, s) for s in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0] and rz.ramp(cfg, 0) == 1.0
    first = rz.randomize(x, cfg, torch.Generator().manual_seed(6), strength=rz.ramp(ramped, 0))
    np.testing.assert_allclose(first.numpy(), rz.normalize(x).numpy(), atol=1e-6)  # step 0: inputs as they are


def test_a_training_batch_feeds_randomised_inputs_and_clean_targets():
    cfg = load_config("smoke", "hippocampus")
    n, shape = 6, tuple(cfg.data.shape)
    images = _volumes(n, shape)
    labels = (images > 0.7).long()
    groups = [str(i) for i in range(n)]
    plain = _draw_batch(images, labels, groups, cfg, torch.Generator().manual_seed(5))
    for a, b in zip(plain[:2], plain[4:], strict=True):
        assert torch.equal(a, b)                    # off: what the network sees is what the loss compares
    on = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, randomize=RandomizeConfig(enabled=True)))
    drawn = _draw_batch(images, labels, groups, on, torch.Generator().manual_seed(5))
    for k in (2, 3, 4, 5):                          # the same pairs, labels and clean volumes ...
        assert torch.equal(drawn[k], plain[k])
    assert (drawn[0] - plain[4]).abs().mean() > 0.05   # ... but randomised inputs


@pytest.mark.parametrize("key, value", [("prob", 1.5), ("lut_knots", 1), ("crop_min", [0.9, 0.9, 0.9]),
                                        ("blur_max", -1.0)])
def test_bad_randomize_settings_are_refused(key, value):
    from regexplain.config import ConfigError

    cfg = {"data": {"randomize": {key: value}}}
    if key == "crop_min":
        cfg["data"]["randomize"]["crop_max"] = [0.5, 0.5, 0.5]
    with pytest.raises(ConfigError, match="data.randomize"):
        load_config("smoke", "hippocampus", cfg)
