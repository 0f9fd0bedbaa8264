"""Split sizes for folders of any size: counts when they fit, else fractions (brute-force references)."""

import json
import shutil

import pytest

from regexplain.config import ConfigError, DataConfig, load_config
from regexplain.data import msd
from regexplain.data.pairs import load_splits
from regexplain.data.split import MIN_PER_SIDE, MIN_SUBJECTS, split_sizes
from regexplain.errors import DataError


def test_counts_are_kept_when_they_fit():
    assert split_sizes(260, 200, 60) == (200, 60, "counts")
    assert split_sizes(300, 200, 60) == (200, 60, "counts")      # extra subjects stay unused, as in the paper


@pytest.mark.parametrize("fractions, asked", [((), (200 / 260, 60 / 260)), ((0.5, 0.5), (0.5, 0.5)),
                                               ((0.6, 0.2), (0.6, 0.2))])
def test_fractions_by_brute_force(fractions, asked):
    """For every small folder the sizes are within rounding of the best valid pair (both sides >= 2,
    sum <= n) for the asked fractions, found by trying them all."""
    for n in range(MIN_SUBJECTS, 80):
        tr, va, rule = split_sizes(n, 200, 60, fractions)
        assert rule == "fractions"
        assert tr >= MIN_PER_SIDE and va >= MIN_PER_SIDE and tr + va <= n
        best = min((abs(t - asked[0] * n) + abs(v - asked[1] * n), t, v)
                   for t in range(MIN_PER_SIDE, n) for v in range(MIN_PER_SIDE, n - t + 1))
        assert abs(tr - asked[0] * n) + abs(va - asked[1] * n) <= best[0] + 1.0   # rounding, then the floor
        assert tr + va == n or sum(asked) < 1             # fractions summing to 1 use every subject


def test_small_and_exact_cases():
    assert split_sizes(4, 8, 4) == (2, 2, "fractions")
    assert split_sizes(6, 200, 60)[:2] == (4, 2)
    with pytest.raises(DataError, match="ds: 3 subject"):
        split_sizes(3, 2, 1, where="ds")
    with pytest.raises(DataError, match="--n-train 8 \\+ --n-val 4 = 12 subjects, only 6"):
        split_sizes(6, 8, 4, exact=True)
    assert split_sizes(12, 8, 4, exact=True) == (8, 4, "counts")


def test_split_fractions_are_validated():
    with pytest.raises(ConfigError, match="data.split"):
        load_config("smoke", overrides={"data": {"split": [0.8, 0.4]}})
    with pytest.raises(ConfigError, match="data.split"):
        load_config("smoke", overrides={"data": {"split": [1.0]}})
    assert load_config("smoke", overrides={"data": {"split": [0.75, 0.25]}}).data.split == (0.75, 0.25)


def test_a_six_subject_folder_splits_by_fractions(hippo_root, tmp_path, capsys):
    """A folder smaller than the profile's counts: seeded, by group, written to split.json."""
    root = tmp_path / "ds"
    shutil.copytree(hippo_root, root)
    entries = json.loads((root / "dataset.json").read_text())
    entries["training"] = entries["training"][:6]
    (root / "dataset.json").write_text(json.dumps(entries))
    cfg = DataConfig(root=str(root), shape=(16, 16, 16), n_subjects=260, n_train=200, n_val=60)
    train, val = load_splits(cfg, progress=False)
    assert (len(train), len(val)) == (4, 2)
    assert "split by their ratio: 4 train / 2 val" in capsys.readouterr().err
    split = json.loads((root / "split.json").read_text())
    assert split["rule"] == "fractions" and split["train"] == train.ids and split["val"] == val.ids
    assert split == {**split, **msd.make_split(train.ids + val.ids, 4, 2, 0)}      # the seeded permutation
    cfg.split = (0.5, 0.5)
    train, val = load_splits(cfg, progress=False)
    assert (len(train), len(val)) == (3, 3)
    assert json.loads((root / "split.json").read_text())["fractions"] == [0.5, 0.5]
    cfg.split, cfg.exact_counts, cfg.n_train, cfg.n_val = (), True, 5, 2
    with pytest.raises(DataError, match="only 6 found"):
        load_splits(cfg, progress=False)


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def six(hippo_root, tmp_path_factory):
    """Six of the session's phantoms: fewer than the smoke profile's 8 + 4."""
    root = tmp_path_factory.mktemp("six") / "ds"
    shutil.copytree(hippo_root, root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"] = meta["training"][:6]
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _train(data, out, *extra):
    """Exit status of `regexplain train` (argparse's own refusals raise SystemExit)."""
    from regexplain import cli

    try:
        return cli.main(["train", "--profile", "smoke", "--data", str(data), "--out", str(out), "--steps", "1",
                         "--no-progress", *[str(e) for e in extra]])
    except SystemExit as e:
        return e.code


def test_cli_split_options(six, tmp_path, capsys):
    data = shutil.copytree(six, tmp_path / "ds")
    assert _train(data, tmp_path / "a", "--split", "0.5", "0.5") == 0
    split = json.loads((data / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), split["fractions"]) == (3, 3, [0.5, 0.5])
    assert _train(data, tmp_path / "b", "--n-train", "2", "--n-val", "3") == 0
    split = json.loads((data / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), split["rule"]) == (2, 3, "counts")
    # the run keeps its split rule: --resume refuses another one
    from regexplain import cli

    assert cli.main(["train", "--out", str(tmp_path / "b"), "--resume", "--split", "0.5", "0.5"]) == 2
    assert "cannot change the split" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--n-train", "5", "--n-val", "2"], "--n-train 5 + --n-val 2 = 7 subjects, only 6 found"),
    (["--split", "0.8", "0.4"], "--split 0.8 0.4: the fractions sum to more than 1"),
    (["--split", "0.5", "0.5", "--n-val", "2"], "--split gives fractions, --n-train/--n-val counts"),
    (["--split", "1.5", "0.2"], "--split"),
    (["--n-val", "1"], "--n-val"),
])
def test_cli_bad_split_is_an_error_and_writes_nothing(six, tmp_path, capsys, extra, message):
    data = shutil.copytree(six, tmp_path / "ds")
    before = sorted(p.name for p in data.rglob("*"))
    assert _train(data, tmp_path / "run", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in data.rglob("*") if not p.name.startswith(".cache")) == before


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_cli_missing_or_empty_data_is_an_error(tmp_path, capsys, state):
    """Before: phantoms were synthesised into the mistyped folder and trained on."""
    data = tmp_path / "typo"
    if state == "empty":
        data.mkdir()
    assert _train(data, tmp_path / "run") == 2
    assert f"{data}: {'no such' if state == 'missing' else 'empty'} data folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and (list(data.iterdir()) == [] if state == "empty" else
                                                 not data.exists())



def test_a_small_lung_folder_splits_by_patient(lung_root, tmp_path):
    """Four patients against the profile's 28 / 13: 2 / 2 patients, both states of each on one side."""
    root = shutil.copytree(lung_root, tmp_path / "ds")
    train, val = load_splits(DataConfig(root=str(root), dataset="lung", shape=(32, 16, 32), num_labels=2,
                                        n_subjects=41, n_train=28, n_val=13), progress=False)
    assert (len(set(train.groups)), len(set(val.groups))) == (2, 2) and (len(train), len(val)) == (4, 4)
    assert not set(train.groups) & set(val.groups)
