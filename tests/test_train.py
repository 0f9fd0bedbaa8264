"""Training loop, resume, bad input, and the train / register / evaluate commands on tiny phantoms."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from regexplain import cli
from regexplain.config import ConfigError, load_config
from regexplain.data.nifti import read_nifti, write_nifti
from regexplain.data.pairs import VolumeSet
from regexplain.errors import TrainingError
from regexplain.registration.checkpoint import load_model, read_checkpoint
from regexplain.registration.inference import original_displacement
from regexplain.registration.train import learning_rate, train


def blobs(n: int, shape=(16, 16, 16), seed: int = 0) -> VolumeSet:
    """Two-label ellipsoids at random offsets: label 1 the half towards axis-0 origin, label 2 the rest."""
    g = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(np.float32)
    c = (np.array(shape, dtype=np.float32) - 1) / 2
    images, labels = [], []
    for _ in range(n):
        centre = c + g.uniform(-2.5, 2.5, 3)
        radii = g.uniform(3.0, 5.0, 3)
        inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
        lab = np.where(inside, np.where(grid[0] < centre[0], 1, 2), 0)
        img = 0.2 + 0.5 * (lab == 1) + 0.3 * (lab == 2) + 0.03 * g.standard_normal(shape)
        images.append(np.clip(img, 0, 1).astype(np.float32))
        labels.append(lab)
    return VolumeSet(images=torch.from_numpy(np.stack(images))[:, None],
                     labels=torch.from_numpy(np.stack(labels)).long()[:, None],
                     ids=[f"s{i}" for i in range(n)], groups=[f"g{i}" for i in range(n)],
                     spacing=(1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def data():
    return blobs(8, seed=0), blobs(4, seed=1)


def smoke(**over):
    return load_config("smoke", "hippocampus", over)


def _train_lines(run):
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"train"' in x]


@pytest.mark.slow
def test_overfitting_one_pair_lowers_the_loss(tmp_path):
    pair = blobs(2, seed=3)
    cfg = smoke(train={"steps": 40, "lr": 3e-3, "batch_size": 1, "val_every": 40, "checkpoint_every": 40},
                data={"augment": {"prob": 0.0, "flip_prob": 0.0}})
    metrics = train(cfg, tmp_path / "run", data=(pair, pair), progress=False)
    losses = [r["total"] for r in _train_lines(tmp_path / "run")]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert metrics["dice_after"] > metrics["dice_before"] + 0.05
    for key in ("sim_mf", "seg_fm", "smooth", "lr", "seconds"):
        assert key in _train_lines(tmp_path / "run")[0]


def test_resumed_run_matches_uninterrupted_run(tmp_path, data):
    cfg = smoke(train={"steps": 4, "checkpoint_every": 2, "val_every": 2})
    train(cfg, tmp_path / "a", data=data, progress=False)
    train(smoke(train={"steps": 2}), tmp_path / "b", data=data, progress=False)
    assert read_checkpoint(tmp_path / "b")["step"] == 2
    train(cfg, tmp_path / "b", resume=True, data=data, progress=False)
    a, b = read_checkpoint(tmp_path / "a"), read_checkpoint(tmp_path / "b")
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, atol=1e-6, rtol=0)
    la, lb = _train_lines(tmp_path / "a"), _train_lines(tmp_path / "b")
    assert [r["step"] for r in lb] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["total"] for r in lb], [r["total"] for r in la], rtol=1e-6)
    # the run is not silently overwritten
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, tmp_path / "a", data=data, progress=False)


def test_cosine_schedule_equals_torchs_and_a_resumed_run_continues_it(tmp_path, data):
    t = smoke(train={"steps": 7, "lr": 2e-3, "lr_schedule": "cosine"}).train
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=t.lr)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.steps, eta_min=0.0)
    for step in range(t.steps):
        assert learning_rate(t, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        ref.step()
    assert learning_rate(smoke(train={"lr": 2e-3}).train, 5) == 2e-3      # the authors' constant rate

    cfg = smoke(train={"steps": 4, "checkpoint_every": 2, "val_every": 2, "lr_schedule": "cosine"})
    train(cfg, tmp_path / "a", data=data, progress=False)
    logged = [r["lr"] for r in _train_lines(tmp_path / "a")]
    np.testing.assert_allclose(logged, [learning_rate(cfg.train, s) for s in range(4)], rtol=1e-12)
    assert logged[0] == cfg.train.lr and all(np.diff(logged) < 0)
    train(smoke(train={"steps": 2, "lr_schedule": "cosine"}), tmp_path / "b", data=data, progress=False)
    train(cfg, tmp_path / "b", resume=True, data=data, progress=False)
    assert [r["lr"] for r in _train_lines(tmp_path / "b")][2:] == logged[2:]   # from the step, not a counter
    with pytest.raises(ConfigError, match="train.lr_schedule"):
        smoke(train={"lr_schedule": "step"})


def test_same_seed_same_numbers_other_seed_differs(tmp_path, data):
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        train(smoke(train={"steps": 1, "seed": seed}), tmp_path / name, data=data, progress=False)
    a, b, c = (_train_lines(tmp_path / n) for n in "abc")
    assert [r["total"] for r in a] == [r["total"] for r in b]
    assert [r["total"] for r in a] != [r["total"] for r in c]


@pytest.mark.parametrize("skip", [False, True])
def test_skip_and_no_skip_train_and_reload(tmp_path, data, skip):
    cfg = smoke(model={"skip_connections": skip}, train={"steps": 2})
    m = train(cfg, tmp_path / "run", data=data, progress=False)
    model, cfg2 = load_model(tmp_path / "run")
    assert model.skip_connections is skip and cfg2.model.skip_connections is skip
    assert m["steps"] == 2 and 0 <= m["dice_before"] <= 1 and 0 <= m["dice_after"] <= 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 2
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_nan_loss_names_step_and_last_checkpoint(tmp_path, data, monkeypatch):
    import regexplain.registration.losses as losses

    real = losses.registration_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        total, terms = real(*a, **k)
        calls["n"] += 1
        return (total * float("nan"), terms) if calls["n"] == 3 else (total, terms)

    monkeypatch.setattr(losses, "registration_loss", poisoned)
    msg = r"step 3: non-finite loss.*last good checkpoint: .*checkpoint\.pt"
    with pytest.raises(TrainingError, match=msg):
        train(smoke(train={"steps": 4, "checkpoint_every": 2}), tmp_path / "run", data=data, progress=False)
    assert read_checkpoint(tmp_path / "run")["step"] == 2


def test_time_budget_stops_early(tmp_path, data):
    m = train(smoke(train={"steps": 1000, "max_minutes": 1e-9}), tmp_path / "run", data=data, progress=False)
    assert m["steps"] < 1000


def test_impossible_config_values_are_rejected():
    with pytest.raises(ConfigError, match=r"divisible by 2\^2"):
        smoke(data={"shape": [18, 16, 16]})
    with pytest.raises(ConfigError, match="loss.smooth must be >= 0"):
        smoke(loss={"smooth": -0.1})


def test_original_displacement_scales_back_to_the_original_grid():
    work, base = (8, 8, 8), (15, 15, 15)
    u = torch.zeros(1, 3, *work)
    u[:, 0], u[:, 2] = 1.0, -0.5                         # working voxels
    out = original_displacement(u, (11, 15, 19), base, work)   # a padded and a cropped axis
    assert out.shape == (1, 3, 11, 15, 19)
    torch.testing.assert_close(out[:, 0], torch.full((1, 11, 15, 19), 2.0))   # 1 * 14 / 7
    torch.testing.assert_close(out[:, 1], torch.zeros(1, 11, 15, 19))
    torch.testing.assert_close(out[:, 2], torch.full((1, 11, 15, 19), -1.0))


# --------------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    from regexplain.data.synthetic import synthesize_hippocampus

    root = tmp_path_factory.mktemp("hippo") / "data"
    synthesize_hippocampus(root, 12, shape=(64, 64, 64), seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, smoke_data):
    run = tmp_path_factory.mktemp("runs") / "run"
    rc = cli.main(["train", "--profile", "smoke", "--data", str(smoke_data), "--out", str(run),
                   "--steps", "2", "--no-progress"])
    assert rc == 0
    return run


def test_cli_train_resume_extends_the_run(smoke_run, capsys):
    assert read_checkpoint(smoke_run)["step"] == 2
    assert cli.main(["train", "--out", str(smoke_run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert read_checkpoint(smoke_run)["step"] == 3
    assert cli.main(["train", "--profile", "smoke", "--out", str(smoke_run), "--no-progress"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_cli_evaluate_writes_csv_and_json(smoke_run, smoke_data, tmp_path):
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(smoke_run), "--data", str(smoke_data), "--out", str(out)]
    assert cli.main(args) == 0
    summary = json.loads(out.read_text())
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert summary["n_pairs"] == len(rows) == load_config("smoke").train.n_val_pairs
    for key in ("dice_before_1", "dice_after_2", "hd95_after_1", "sdlogj_after", "folding_pct_after"):
        assert key in rows[0] and key in summary
    # "before" Dice of the first pair, recomputed independently from the val split
    from regexplain.data.pairs import load_splits

    cfg = load_config("smoke", overrides={"data": {"root": str(smoke_data)}})
    _, val = load_splits(cfg.data)
    m, f = val.ids.index(rows[0]["moving"]), val.ids.index(rows[0]["fixed"])
    a, b = val.labels[m, 0].numpy() == 1, val.labels[f, 0].numpy() == 1
    assert float(rows[0]["dice_before_1"]) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), abs=1e-6)


def test_cli_register_writes_on_the_fixed_grid(smoke_run, tmp_path, capsys):
    from regexplain.registration.spatial import affine_matrix

    shape = (20, 18, 22)
    g = np.random.default_rng(0)
    affine = np.eye(4)                                    # oblique, anisotropic, shifted fixed grid
    affine[:3, :3] = affine_matrix(rotation=(10, -20, 35)).numpy() @ np.diag([0.9, 1.1, 1.3])
    affine[:3, 3] = [5, -3, 2]
    mov = g.random(shape).astype(np.float32) * 100
    lab = (g.random(shape) > 0.7).astype(np.uint8)
    write_nifti(tmp_path / "m.nii.gz", mov, np.eye(4))
    write_nifti(tmp_path / "l.nii.gz", lab, np.eye(4))
    write_nifti(tmp_path / "f.nii.gz", mov[::-1].copy(), affine)
    out = tmp_path / "out"
    assert cli.main(["register", "--model", str(smoke_run), "--moving", str(tmp_path / "m.nii.gz"),
                     "--fixed", str(tmp_path / "f.nii.gz"), "--moving-label", str(tmp_path / "l.nii.gz"),
                     "--out", str(out), "--pictures"]) == 0
    assert "views: " in capsys.readouterr().out
    from PIL import Image

    with Image.open(out / "views.png") as views:  # three views x (arrows, grid, Jacobian)
        assert views.format == "PNG" and views.size[0] >= 1000 and views.size[1] > views.size[0]
    for name, want in (("warped", shape), ("warped_label", shape), ("displacement_voxels", (*shape, 3)),
                       ("displacement_itk", (*shape, 1, 3))):
        arr, aff = _read4d(out / f"{name}.nii.gz")
        assert arr.shape == want
        np.testing.assert_allclose(aff, affine, atol=1e-6)
    from test_itk import inside, sitk_resample  # SimpleITK, a declared test dependency

    theirs = sitk_resample(tmp_path / "m.nii.gz", out / "displacement_itk.nii.gz", out / "warped.nii.gz")
    u = np.moveaxis(_read4d(out / "displacement_voxels.nii.gz")[0], -1, 0)
    mask = inside(u)
    assert mask.mean() > 0.5
    np.testing.assert_allclose(theirs[mask], read_nifti(out / "warped.nii.gz")[0][mask], atol=1e-3)
    warped_label, _ = read_nifti(out / "warped_label.nii.gz")
    assert set(np.unique(warped_label)) <= {0, 1}
    # bf16 inference: same files, displacement close to the float32 one
    assert cli.main(["register", "--model", str(smoke_run), "--moving", str(tmp_path / "m.nii.gz"),
                     "--fixed", str(tmp_path / "f.nii.gz"), "--out", str(tmp_path / "bf16"),
                     "--precision", "bfloat16"]) == 0
    u32 = _read4d(out / "displacement_voxels.nii.gz")[0]
    u16 = _read4d(tmp_path / "bf16" / "displacement_voxels.nii.gz")[0]
    assert np.abs(u16 - u32).max() < 0.05 + 0.05 * np.abs(u32).max()
    # mismatched shapes: one clear line naming the file
    write_nifti(tmp_path / "small.nii.gz", mov[:10], np.eye(4))
    assert cli.main(["register", "--model", str(smoke_run), "--moving", str(tmp_path / "small.nii.gz"),
                     "--fixed", str(tmp_path / "f.nii.gz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "small.nii.gz" in err and "differs from the fixed image" in err


def _read4d(path):
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def test_register_with_untrained_model_is_identity(tmp_path):
    from regexplain.registration.inference import register_files
    from regexplain.registration.model import RegistrationNet

    cfg = smoke()
    model = RegistrationNet.from_config(cfg)           # zero head: identity map
    mov = np.random.default_rng(1).random((16, 20, 12)).astype(np.float32)
    write_nifti(tmp_path / "m.nii", mov, np.eye(4))
    write_nifti(tmp_path / "f.nii", mov, np.eye(4))
    paths = register_files(model, cfg, tmp_path / "m.nii", tmp_path / "f.nii", tmp_path / "o")
    warped, _ = read_nifti(paths["warped"])
    np.testing.assert_allclose(warped, mov, atol=1e-4)
    assert np.abs(_read4d(paths["displacement_voxels"])[0]).max() < 1e-4
    assert np.abs(_read4d(paths["displacement_itk"])[0]).max() < 1e-4


def test_paper_profile_validates_once_per_epoch():
    from regexplain.registration.train import epoch_steps

    for dataset in ("hippocampus", "lung"):
        cfg = load_config("paper", dataset)
        assert cfg.train.val_every == epoch_steps(cfg) == -(-cfg.data.n_train // cfg.train.batch_size)
        assert cfg.train.steps == 600 * epoch_steps(cfg)      # the paper's 600 epochs


def test_pair_augmentation_flips_both_volumes_of_a_pair_alike():
    from regexplain.config import AugmentConfig
    from regexplain.data.augment import pair_augmentation_maps
    from regexplain.registration.spatial import jacobian_determinant

    g = torch.Generator().manual_seed(0)
    flips_only = AugmentConfig(flip_prob=0.5, rotation_deg=0, translation_vox=0, zoom=0, prob=1.0, rot90=False)
    phi = pair_augmentation_maps(16, (6, 6, 6), flips_only, g)
    torch.testing.assert_close(phi[:16], phi[16:])                 # same pair, same flips
    signs = jacobian_determinant(phi).flatten(1).mean(1).sign()
    assert {-1.0, 1.0} <= set(signs.tolist())                      # and flips do happen
    full = AugmentConfig(flip_prob=0.5, rotation_deg=10, translation_vox=2, zoom=0.1, prob=1.0, rot90=False,
                         one_axis_rotation=False, per_pair=False)   # the earlier per-volume policy
    phi = pair_augmentation_maps(16, (6, 6, 6), full, g)
    det = jacobian_determinant(phi).flatten(1).mean(1)
    assert torch.equal(det[:16].sign(), det[16:].sign())            # orientation shared...
    assert (phi[:16] - phi[16:]).abs().amax() > 0.1                  # ...the rest drawn per volume
