import numpy as np
import pytest
import torch

from regexplain.config import AugmentConfig
from regexplain.data.augment import (
    apply_maps,
    pair_augmentation_maps,
    random_affine_maps,
    random_affine_params,
)
from regexplain.registration import spatial

NONE = dict(flip_prob=0.0, rot90=False, rotation_deg=0.0, translation_vox=0.0, zoom=0.0, prob=1.0)


def augment_batch(images, labels, cfg, generator):
    """One random transform per volume, the same for the volume and its label (training draws them per
    pair with :func:`pair_augmentation_maps`, from the same :func:`random_affine_maps`)."""
    return apply_maps(random_affine_maps(images.shape[0], images.shape[2:], cfg, generator, device=images.device),
                      images, labels)


def _labels(shape=(12, 14, 10), seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = torch.zeros((2, 1, *shape), dtype=torch.long)
    lab[:, :, 3:8, 4:11, 2:6] = 1
    lab[:, :, 5:7, 6:9, 3:5] = 2
    lab[1] = torch.roll(lab[1], 2, dims=2)
    return lab, g


def test_no_augmentation_is_identity():
    lab, g = _labels()
    img = torch.rand(lab.shape, generator=g)
    out, lout = augment_batch(img, lab, AugmentConfig(**NONE), g)
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)
    assert torch.equal(lout, lab)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_equals_numpy_flip(axis):
    lab, g = _labels()
    img = torch.rand(lab.shape, generator=g)
    mats = torch.eye(3, dtype=torch.float64)
    mats[axis, axis] = -1
    phi = spatial.affine_sampling_map(lab.shape[2:], mats)
    out, lout = apply_maps(phi, img, lab)
    np.testing.assert_allclose(out.numpy(), np.flip(img.numpy(), axis=2 + axis), atol=1e-5)
    np.testing.assert_array_equal(lout.numpy(), np.flip(lab.numpy(), axis=2 + axis))


def test_flip_probability_one_flips_every_axis():
    lab, g = _labels()
    img = torch.rand(lab.shape, generator=g)
    cfg = AugmentConfig(**{**NONE, "flip_prob": 1.0})
    out, lout = augment_batch(img, lab, cfg, g)
    np.testing.assert_allclose(out.numpy(), img.numpy()[:, :, ::-1, ::-1, ::-1], atol=1e-5)
    assert torch.equal(lout, lab.flip(2, 3, 4))


def test_integer_translation_is_a_shift():
    cfg = AugmentConfig(**{**NONE, "translation_vox": 3.0})
    mats, shift = random_affine_params(1, cfg, torch.Generator().manual_seed(0))
    assert (shift.abs() <= 3).all() and torch.equal(mats[0], torch.eye(3, dtype=torch.float64))
    lab, _ = _labels()
    phi = spatial.affine_sampling_map(lab.shape[2:], torch.eye(3), (2.0, -1.0, 1.0))
    _, lout = apply_maps(phi, lab.float(), lab)
    ref = np.zeros_like(lab.numpy())
    ref[:, :, 2:, :-1, 1:] = lab.numpy()[:, :, :-2, 1:, :-1]
    np.testing.assert_array_equal(lout.numpy(), ref)


def test_image_and_label_stay_aligned():
    # Piecewise-constant image = 10 x label: wherever the trilinear image is an exact plateau value,
    # the nearest-neighbour label must be that plateau's label.
    lab, g = _labels((16, 16, 16))
    img = lab.float() * 10
    cfg = AugmentConfig(flip_prob=0.5, rotation_deg=20, translation_vox=3, zoom=0.15, prob=1.0)
    for _ in range(5):
        out, lout = augment_batch(img, lab, cfg, g)
        plateau = (out - out.round()).abs() < 1e-4
        plateau &= torch.isin(out.round(), torch.tensor([0.0, 10.0, 20.0]))
        assert plateau.float().mean() > 0.5
        assert torch.equal(lout[plateau], (out[plateau].round() / 10).long())
        assert lout.dtype == torch.long and set(lout.unique().tolist()) <= {0, 1, 2}


def test_same_generator_seed_same_maps_and_ranges():
    cfg = AugmentConfig(flip_prob=0.5, rotation_deg=15, translation_vox=2, zoom=0.1, prob=1.0)
    a = random_affine_maps(4, (6, 7, 8), cfg, torch.Generator().manual_seed(3))
    b = random_affine_maps(4, (6, 7, 8), cfg, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 6, 7, 8) and torch.equal(a, b)
    mats, _ = random_affine_params(200, cfg, torch.Generator().manual_seed(0))
    dets = torch.linalg.det(mats).abs() ** (1 / 3)
    assert dets.min() >= 0.9 - 1e-6 and dets.max() <= 1.1 + 1e-6
    negative = (torch.linalg.det(mats) < 0).float().mean()
    assert 0.35 < negative < 0.65  # an odd number of flips half of the time


def test_prob_zero_never_augments():
    cfg = AugmentConfig(flip_prob=1.0, rotation_deg=20, translation_vox=3, zoom=0.1, prob=0.0)
    mats, shift = random_affine_params(10, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(mats, torch.eye(3, dtype=torch.float64).expand(10, 3, 3)) and (shift == 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu_like_on_cpu():
    lab, _ = _labels()
    img = torch.rand(lab.shape)
    cfg = AugmentConfig(flip_prob=0.5, rotation_deg=15, translation_vox=2, zoom=0.1, prob=1.0)
    c_img, c_lab = augment_batch(img, lab, cfg, torch.Generator().manual_seed(1))
    g_img, g_lab = augment_batch(img.cuda(), lab.cuda(), cfg, torch.Generator().manual_seed(1))
    assert g_img.is_cuda and g_lab.is_cuda
    torch.testing.assert_close(g_img.cpu(), c_img, atol=1e-4, rtol=0)
    assert (g_lab.cpu() != c_lab).float().mean() < 1e-3


def test_authors_policy_is_the_default():
    a = AugmentConfig()
    assert (a.flip_prob, a.rot90, a.rotation_deg, a.one_axis_rotation, a.translation_vox, a.zoom, a.prob,
            a.per_pair) == (0.5, True, 20.0, True, 10.0, 0.2, 1.0, True)


def test_per_pair_augmentation_applies_one_transform_to_both_volumes():
    lab, g = _labels((12, 12, 12))
    img = torch.rand(lab.shape, generator=g)
    cfg = AugmentConfig(translation_vox=3.0)                   # the authors' policy, smaller shifts
    phi = pair_augmentation_maps(2, (12, 12, 12), cfg, torch.Generator().manual_seed(5))
    assert phi.shape == (4, 3, 12, 12, 12)
    assert torch.equal(phi[:2], phi[2:])                        # moving i and fixed i: the same map
    assert (phi[:2] - spatial.identity_map((12, 12, 12))).abs().amax() > 0.5   # and it does transform
    # warping a pair made of one volume twice keeps the two volumes identical
    moving, fixed = apply_maps(phi, torch.cat([img, img]), torch.cat([lab, lab]))
    assert torch.equal(moving[:2], moving[2:]) and torch.equal(fixed[:2], fixed[2:])
    # the earlier policy draws each volume's rotation/translation/zoom on its own
    old = AugmentConfig(rotation_deg=10, translation_vox=3, zoom=0.1, prob=1.0, rot90=False,
                        one_axis_rotation=False, per_pair=False)
    phi = pair_augmentation_maps(2, (12, 12, 12), old, torch.Generator().manual_seed(5))
    assert (phi[:2] - phi[2:]).abs().amax() > 0.1


def test_quarter_turns_are_exact_and_keep_the_shape():
    cfg = AugmentConfig(**{**NONE, "rot90": True})
    mats, _ = random_affine_params(64, cfg, torch.Generator().manual_seed(0), shape=(8, 4, 8))
    for m in mats:
        assert torch.equal(m.abs().sum(0), torch.ones(3, dtype=torch.float64))   # signed permutation
        assert m[1, 1] == 1                                     # only the (D, W) plane has equal sizes
        assert torch.linalg.det(m) == 1
    assert len({tuple(m.flatten().tolist()) for m in mats}) == 4    # k = 1..4 all drawn
    lab, g = _labels((10, 10, 10))
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    _, lout = apply_maps(spatial.affine_sampling_map((10, 10, 10), turn), lab.float(), lab)
    assert torch.equal(lout, torch.rot90(lab, 1, dims=(2, 3))) or torch.equal(lout, torch.rot90(lab, -1, dims=(2, 3)))


def test_one_axis_rotation_turns_about_a_single_axis():
    cfg = AugmentConfig(**{**NONE, "rotation_deg": 20.0, "one_axis_rotation": True})
    mats, _ = random_affine_params(100, cfg, torch.Generator().manual_seed(0))
    axes = set()
    for m in mats:
        fixed = [i for i in range(3) if torch.allclose(m[:, i], torch.eye(3, dtype=torch.float64)[i])]
        assert len(fixed) >= 1
        axes.update(fixed if len(fixed) == 1 else [])
        angle = torch.rad2deg(torch.arccos(((torch.trace(m) - 1) / 2).clamp(-1, 1)))
        assert angle <= 20.0 + 1e-6
    assert axes == {0, 1, 2}
