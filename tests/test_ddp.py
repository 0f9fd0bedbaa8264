"""Data-parallel training: two CPU ranks on gloo, launched by torchrun or spawned by the trainer itself
(``train.processes``); their averaged gradients against one process on the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from regexplain.registration.checkpoint import read_checkpoint

WORKER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, {tests!r})
    from test_train import blobs
    from regexplain.config import load_config
    from regexplain.registration.train import Trainer

    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = load_config("smoke", "hippocampus", {{"train": {{"steps": int(sys.argv[3]), "threads": 1,
                                                           "batch_size": 4}}}})
    trainer = Trainer(cfg, run, False, "cpu", (blobs(8, seed=0), blobs(4, seed=1)), False)
    metrics = trainer.loop()
    rank = os.environ.get("RANK", "single")
    grads = {{n: p.grad for n, p in trainer.model.named_parameters()}}   # the last step's (averaged) gradients
    torch.save({{"model": trainer.model.state_dict(), "world": trainer.ddp.world, "grads": grads}},
               out / f"rank{{rank}}.pt")
""")


@pytest.mark.slow
def test_two_gloo_ranks_stay_in_sync(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tmp_path / "run"), str(tmp_path), "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    ckpt = read_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 2 and ckpt["metrics"]["world_size"] == 2
    init = _initial_weights()
    moved = False
    for k, v in ranks[0]["model"].items():
        torch.testing.assert_close(ranks[1]["model"][k], v, atol=1e-6, rtol=0)   # gradients were averaged
        torch.testing.assert_close(ckpt["model"][k], v, atol=0, rtol=0)          # rank 0 wrote the file
        moved |= not torch.allclose(init[k], v)
    assert moved, "two DDP steps did not change the weights"
    assert not list((tmp_path / "run").glob("*.tmp")) and (tmp_path / "run" / "log.jsonl").is_file()


@pytest.mark.slow
def test_two_ranks_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    """Each rank trains on its half of the same global batch; DDP's average of the halves' gradients is
    the one-process gradient of the whole batch, to float rounding (step 2: at step 1 only the
    zero-initialised head has a gradient)."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tmp_path / "ddp"), str(tmp_path), "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, str(worker), str(tmp_path / "one"), str(tmp_path), "2"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    single = torch.load(tmp_path / "ranksingle.pt", weights_only=True)
    assert single["world"] == 1 and ranks[0]["world"] == 2
    nonzero = 0
    for k, g in single["grads"].items():
        scale = g.abs().max().item()
        nonzero += scale > 0
        for r in ranks:
            torch.testing.assert_close(r["grads"][k], g, atol=1e-5 * max(scale, 1e-3), rtol=1e-4)
    assert nonzero >= len(single["grads"]) // 2, "too few non-zero gradients for a meaningful comparison"


@pytest.mark.slow
def test_train_processes_spawns_ranks_that_log_the_whole_batch(tmp_path):
    """train.processes: 2 spawns two single-thread ranks (no launcher); the first step's logged loss terms,
    the mean over the ranks' halves, equal the one-process terms of the same global batch."""
    from test_train import blobs

    from regexplain.config import load_config
    from regexplain.registration.train import train

    data = (blobs(8, seed=0), blobs(4, seed=1))
    logs = {}
    for n in (1, 2):
        cfg = load_config("smoke", "hippocampus", {"train": {"steps": 2, "threads": 1, "batch_size": 4,
                                                             "processes": n}})
        metrics = train(cfg, tmp_path / f"p{n}", device="cpu", data=data, progress=False)
        assert metrics["world_size"] == n and metrics["steps"] == 2
        logs[n] = [json.loads(ln) for ln in (tmp_path / f"p{n}" / "log.jsonl").read_text().splitlines()]
    first = [next(r for r in logs[n] if r["kind"] == "train") for n in (1, 2)]
    for k in ("total", "sim", "seg", "smooth"):
        assert first[1][k] == pytest.approx(first[0][k], abs=1e-5), k
    assert read_checkpoint(tmp_path / "p2")["metrics"]["world_size"] == 2
    assert not list((tmp_path / "p2").glob("*.tmp"))


@pytest.mark.slow
def test_spawned_run_resumes_bit_for_bit(tmp_path):
    """Two spawned ranks: 2 steps then a resume to 4 give the weights of 4 uninterrupted steps."""
    from test_train import blobs

    from regexplain.config import load_config
    from regexplain.registration.train import train

    data = (blobs(8, seed=0), blobs(4, seed=1))

    def cfg(steps):
        return load_config("smoke", "hippocampus", {"train": {"steps": steps, "processes": 2, "batch_size": 4,
                                                              "checkpoint_every": 2}})
    train(cfg(4), tmp_path / "straight", device="cpu", data=data, progress=False)
    train(cfg(2), tmp_path / "resumed", device="cpu", data=data, progress=False)
    train(cfg(4), tmp_path / "resumed", resume=True, device="cpu", data=data, progress=False)
    a, b = (read_checkpoint(tmp_path / n)["model"] for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_rank_error_is_raised_again_in_the_parent(tmp_path):
    """A rank that cannot resume stops the run with the single-process run's error, not a traceback."""
    from test_train import blobs

    from regexplain.config import load_config
    from regexplain.errors import TrainingError
    from regexplain.registration.train import train

    data = (blobs(8, seed=0), blobs(4, seed=1))
    cfg = load_config("smoke", "hippocampus", {"train": {"steps": 2, "processes": 2}})
    train(cfg, tmp_path / "run", device="cpu", data=data, progress=False)
    other = load_config("smoke", "hippocampus", {"train": {"steps": 4, "processes": 2},
                                                 "model": {"channels": [4, 8, 16]}})
    with pytest.raises(TrainingError, match="cannot resume"):
        train(other, tmp_path / "run", resume=True, device="cpu", data=data, progress=False)
    assert read_checkpoint(tmp_path / "run")["step"] == 2


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_train import blobs
    from regexplain.config import load_config
    from regexplain.registration.train import train

    # no `if __name__ == "__main__":` guard: the ranks must not run this script again
    cfg = load_config("smoke", "hippocampus", {{"train": {{"steps": 2, "processes": 2}}}})
    m = train(cfg, sys.argv[1], device="cpu", data=(blobs(8, seed=0), blobs(4, seed=1)), progress=False)
    print("world", m["world_size"])
""")


@pytest.mark.slow
def test_spawning_script_needs_no_main_guard(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "world 2" in proc.stdout, proc.stderr[-3000:]


def test_unequal_shares_are_refused():
    from regexplain.config import ConfigError, load_config
    from regexplain.errors import TrainingError
    from regexplain.registration.parallel import batch_share

    with pytest.raises(ConfigError, match="train.processes"):
        load_config("smoke", overrides={"train": {"batch_size": 3, "processes": 2}})
    assert batch_share(4, 1, 2) == slice(2, 4)
    with pytest.raises(TrainingError, match=r"train.batch_size 3 must be a multiple of the number of processes \(2"):
        batch_share(3, 0, 2)


def _initial_weights():
    from regexplain.config import load_config
    from regexplain.registration.model import RegistrationNet

    torch.manual_seed(load_config("smoke").train.seed)
    return RegistrationNet.from_config(load_config("smoke")).state_dict()


@pytest.mark.slow
def test_sigterm_to_the_parent_stops_its_ranks(tmp_path):
    """`kill PID` of a `regexplain train` with spawned ranks: the ranks stop with it (none trains on
    without the process holding the run folder's lock), one line, exit 128 + 15."""
    import signal
    import time

    import yaml

    from regexplain.config import PROFILE_DIR

    profile = yaml.safe_load((PROFILE_DIR / "smoke.yaml").read_text())
    profile["common"]["train"].update(steps=100000, processes=2, checkpoint_every=100000, val_every=100000)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    from regexplain.data.synthetic import synthesize_hippocampus

    synthesize_hippocampus(tmp_path / "data", n=8, seed=0, progress=False)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "regexplain.cli", "train", "--profile", str(tmp_path / "p.yaml"),
                             "--data", str(tmp_path / "data"), "--out", str(run)], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not ((run / "log.jsonl").is_file() and (run / "log.jsonl").stat().st_size) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    assert (run / "log.jsonl").is_file(), "the ranks never started a step"
    children = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "spawn_main"], capture_output=True,
                              text=True).stdout.split()
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err

    def alive() -> list[str]:
        out = []
        for c in children:
            try:
                if Path(f"/proc/{c}/stat").read_text().split()[2] != "Z":
                    out.append(c)
            except OSError:   # gone (and reaped)
                pass
        return out

    deadline = time.monotonic() + 30   # a bound against a hang on a loaded machine, not a measurement
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(), f"ranks {alive()} still run 30 s after the parent stopped"
