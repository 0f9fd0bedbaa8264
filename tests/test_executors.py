"""Study executors: trainings side by side in local processes and through submitit give the runs a
sequential training of the same configs gives, bit for bit, in the same resumable folders."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from deps import need

from regexplain import executors, runs
from regexplain.config import load_config
from regexplain.errors import TrainingError
from regexplain.registration.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def smoke_jobs(tmp_path_factory):
    """Two smoke trainings (seeds 0 and 1, one thread each) on phantoms written once."""
    root = tmp_path_factory.mktemp("exec")
    cfgs = []
    for seed in (0, 1):
        cfg = load_config("smoke", overrides={"data": {"root": str(root / "data")},
                                              "train": {"seed": seed, "steps": 2, "threads": 1}})
        cfgs.append(cfg)
    runs.ensure_data(cfgs[0])
    return root, cfgs


def _jobs(root, cfgs, name):
    return [executors.job_for(c, root / name / f"seed{c.train.seed}") for c in cfgs]


def _weights(rd):
    return read_checkpoint(rd)["model"]


def _same_runs(a_dirs, b_dirs):
    for a, b in zip(a_dirs, b_dirs, strict=True):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{a} and {b} differ"


@pytest.mark.slow
def test_local_processes_equal_sequential_and_resume(smoke_jobs):
    root, cfgs = smoke_jobs
    seq = _jobs(root, cfgs, "sequential")
    executors.sequential()(seq)
    par = _jobs(root, cfgs, "local")
    msgs = executors.local_processes(jobs=2, threads=1)(par)
    assert [m.split()[0] for m in msgs] == ["trained", "trained"]
    assert all(runs.run_finished(j.run_dir) for j in par)
    _same_runs([j.run_dir for j in seq], [j.run_dir for j in par])      # one thread each: same config
    cfg = read_checkpoint(par[0].run_dir)["config"]["train"]
    assert cfg["threads"] == 1 and cfg["processes"] == 1
    # a second call reuses finished runs; an unfinished one (metrics lost) resumes from its checkpoint
    (root / "local" / "seed1" / "metrics.json").unlink()
    msgs = executors.local_processes(jobs=2)(par)
    assert msgs[0].startswith("reused") and msgs[1].startswith("resumed")


@pytest.mark.slow
def test_submitit_debug_executor_equals_sequential(smoke_jobs, tmp_path):
    need("submitit")
    root, cfgs = smoke_jobs
    seq = _jobs(root, cfgs, "sequential_b")
    executors.sequential()(seq)
    sub = _jobs(root, cfgs, "submitit")
    msgs = executors.submitit_jobs(tmp_path / "logs", cluster="debug", partition="gpu", gpus=1)(sub)
    assert all(m.startswith("trained") for m in msgs)
    _same_runs([j.run_dir for j in seq], [j.run_dir for j in sub])


def test_failed_jobs_are_named_and_the_others_finish(smoke_jobs, tmp_path):
    root, cfgs = smoke_jobs
    bad = dataclasses.replace(cfgs[0], data=dataclasses.replace(cfgs[0].data, root=str(tmp_path / "missing")))
    jobs = [executors.job_for(bad, tmp_path / "bad"), executors.job_for(cfgs[1], tmp_path / "good")]
    with pytest.raises(TrainingError, match=r"1 of 2 training\(s\) failed.*bad"):
        executors.local_processes(jobs=2)(jobs)
    assert runs.run_finished(tmp_path / "good")


def test_bad_executor_options(tmp_path):
    import shutil

    from regexplain.errors import UsageError

    with pytest.raises(UsageError, match="--jobs"):
        executors.local_processes(jobs=0)
    need("submitit")
    if shutil.which("srun") is None:           # away from a SLURM cluster: one clear line, nothing trained
        job = executors.job_for(load_config("smoke"), tmp_path / "run")
        with pytest.raises(UsageError, match="--executor slurm.*srun"):
            executors.submitit_jobs(tmp_path / "logs")([job])
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_study_with_two_local_jobs(tmp_path):
    from regexplain.analysis import study

    res = study.run_study("smoke", tmp_path, seeds=(0, 1, 2), regime="pose", n_null=10, progress=False,
                          log=lambda _m: None, executor=executors.local_processes(jobs=2))
    base = tmp_path / "pose"
    assert sorted(p.name for p in (base / "runs").iterdir()) == [f"{a}_seed{s}" for a in ("noskip", "skip")
                                                                for s in (0, 1, 2)]
    assert all(read_checkpoint(p)["config"]["train"]["threads"] == 1 for p in (base / "runs").iterdir())
    assert len(list((base / "scores").glob("*.json"))) == 9 and res["verdicts"]


def test_study_command_executor_options(tmp_path, capsys):
    from regexplain.cli import build_parser
    from regexplain.commands.study import make_executor

    parse = build_parser().parse_args
    assert make_executor(parse(["study", "--out", str(tmp_path)]), tmp_path) is None     # as before
    assert callable(make_executor(parse(["study", "--jobs", "3"]), tmp_path))
    args = parse(["study", "--executor", "slurm", "--partition", "gpu", "--gpus", "1", "--time", "90"])
    assert (args.partition, args.gpus, args.time) == ("gpu", 1, 90) and callable(make_executor(args, tmp_path))
    assert (args.executor, args.jobs, args.cpus) == ("slurm", 1, 2)    # the defaults the slurm jobs get
    with pytest.raises(SystemExit) as e:
        parse(["study", "--jobs", "0"])
    assert e.value.code == 2 and "argument --jobs: must be >= 1, got 0" in capsys.readouterr().err
