"""Training loop: random pairs of different subjects, the paper's augmentation, symmetric loss, Adam.

Run directory ``RUN/``: ``checkpoint.pt`` (latest, see :mod:`regexplain.registration.checkpoint`), ``config.yaml``,
``log.jsonl`` (one JSON object per line: ``{"kind": "train", "step", "loss", <every loss term>, "lr",
"seconds"}`` per step and ``{"kind": "val", "step", "dice_before", "dice_after", "folding_pct",
"sdlogj"}`` per validation) and ``metrics.json`` (final).

Design choices:

* Training counts *steps* (``cfg.train.steps``) and may stop early at ``cfg.train.max_minutes`` of
  cumulative wall time (a resumed run keeps counting). Validation runs every ``cfg.train.val_every``
  steps and at the end. The paper validates each *epoch*; the paper profile sets ``val_every`` to one
  epoch (``n_train / batch_size`` steps), the small profiles validate less often to keep CPU time for
  learning.
* Randomness of step ``s`` comes from one CPU generator reseeded with a hash of ``(seed, 0, s)``. Every
  rank draws the same global batch of ``batch_size`` pairs from it and trains on its share
  (:func:`regexplain.registration.parallel.batch_share`), so a resumed run draws exactly the pairs and augmentations
  the uninterrupted run would have drawn, and the data do not depend on the number of ranks. Model
  initialisation uses ``cfg.train.seed`` on every rank.
* Data stay on the training device; a step only moves the few pair indices.
* bf16 autocast on CUDA when ``cfg.train.amp``; the CPU stays in float32 (bit-reproducible for a seed).
  On the CPU the network runs in ``channels_last_3d`` (faster steps, ``benchmarks/train_step.py``).
* ``train.processes: N`` on the CPU spawns N single-thread ranks (:mod:`regexplain.registration.parallel`); under
  ``torchrun`` (``WORLD_SIZE > 1``) the ranks are torchrun's. Either way the model is wrapped in
  DistributedDataParallel (NCCL on CUDA, gloo on the CPU), ``batch_size`` is the global batch split over
  the ranks, and only rank 0 writes files. One small all-reduce per step shares the loss terms (logged as
  the mean over ranks; a NaN on any rank stops every rank) and rank 0's time-budget decision.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from regexplain import runtime
from regexplain.config import Config, TrainConfig, save_config
from regexplain.data.augment import apply_maps, pair_augmentation_maps
from regexplain.errors import TrainingError
from regexplain.interrupts import raise_if_interrupted
from regexplain.io import disk_full, write_json, write_text
from regexplain.registration.checkpoint import (
    CHECKPOINT_NAME,
    check_finite,
    check_state_dict,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from regexplain.registration.parallel import batch_share
from regexplain.registration.spatial import one_hot
from regexplain.run_folder import run_folder

# save_checkpoint / load_model live in registration.checkpoint; re-exported because the contract lists them here
__all__ = ["train", "Trainer", "save_checkpoint", "load_model", "step_seed", "epoch_steps"]


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device | str | None) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), runtime.select_device(str(device) if device else None)
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = runtime.select_device(str(device) if device else None)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return _Dist(rank, world), dev


def step_seed(seed: int, rank: int, step: int) -> int:
    """Well-mixed 63-bit seed for step ``step`` of rank ``rank`` (neighbouring steps are independent)."""
    state = np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def epoch_steps(cfg: Config) -> int:
    """Steps in one pass over the training subjects (the paper's epoch)."""
    return max(1, math.ceil(cfg.data.n_train / cfg.train.batch_size))


def _to_float(out):
    # the loss is computed in float32 even when the forward ran under bf16 autocast
    if dataclasses.is_dataclass(out):
        fields = [f.name for f in dataclasses.fields(out) if torch.is_tensor(getattr(out, f.name))]
        return dataclasses.replace(out, **{k: getattr(out, k).float() for k in fields})
    return out


def _load_data(cfg: Config, data):
    if data is not None:
        return data
    from regexplain.data.pairs import load_splits
    return load_splits(cfg.data)


def _draw_batch(images, labels, groups, cfg: Config, gen: torch.Generator, share: slice | None = None,
                step: int = 0):
    """Moving/fixed images and one-hot labels of ``batch_size`` random pairs of different subjects,
    augmented (image and label with the same transform; see :func:`pair_augmentation_maps`).

    ``share``: the pairs of the drawn batch to return (a data-parallel rank's share); all by default. The
    whole batch is drawn either way, so a share holds the very pairs and transforms a single process sees.

    Returns moving and fixed as the network sees them (randomised when ``data.randomize.enabled``), their
    one-hot labels, then moving and fixed un-randomised (what the similarity loss compares). ``step``: the
    training step (the randomisation's ramp, :func:`regexplain.data.randomize.ramp`).
    """
    from regexplain.data.pairs import random_pairs

    b = cfg.train.batch_size
    mi, fi = random_pairs(groups, b, gen)
    phi = pair_augmentation_maps(b, images.shape[2:], cfg.data.augment, gen, device=images.device)
    keep = torch.arange(b)[share or slice(None)]
    n = len(keep)
    sel = torch.cat([keep, b + keep])                   # moving volumes, then their fixed volumes
    idx = torch.cat([mi, fi])[sel].to(images.device)
    img, lab = apply_maps(phi[sel.to(phi.device)], images[idx], labels[idx])
    oh = one_hot(lab, cfg.data.num_labels)
    seen = img
    if cfg.data.randomize.enabled:   # the network sees random appearances; the loss the images themselves
        from regexplain.data.randomize import ramp, randomize

        full = torch.empty((2 * b, *img.shape[1:]), dtype=img.dtype, device=img.device)
        full[sel.to(img.device)] = img
        seen = randomize(full, cfg.data.randomize, gen, select=sel, strength=ramp(cfg.data.randomize, step))
    return seen[:n], seen[n:], oh[:n], oh[n:], img[:n], img[n:]


class _Log:
    """Append-only JSON lines (rank 0 only); on resume, lines past the checkpoint's step are dropped so
    the log reads as one uninterrupted run. The old log is read (and checked) when the object is made,
    rewritten only by :meth:`start`."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled, self.keep = path, enabled, None
        if enabled and resume_step is not None and path.exists():
            self.keep = [ln for ln, rec in _log_records(path) if rec.get("step", 0) <= resume_step]

    def start(self) -> None:
        if not self.enabled:
            return
        if self.keep is not None:
            write_text(self.path, "".join(ln + "\n" for ln in self.keep))
        elif self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            try:
                with self.path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:   # a cut-off last line is dropped at the next resume
                raise disk_full(self.path, e) from e


def read_log(path: str | Path) -> list[dict]:
    """Every record of a run's ``log.jsonl`` (training steps and validations, in order). A cut-off last
    line (a kill while writing) is dropped with a note; a damaged line elsewhere raises
    :class:`TrainingError` naming the file and the line."""
    return [rec for _, rec in _log_records(Path(path))]


def _log_records(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` of every line of a run's log. A cut-off last line (a kill while writing) is
    dropped with a note; a damaged line elsewhere is a :class:`TrainingError` naming file and line."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise TrainingError(f"{path}: not a text file ({e}); cannot resume its log") from e
    out = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines) - 1:
                print(f"regexplain: {path}: dropped a cut-off last line (line {i + 1}, written while the run "
                      "was stopped)", file=sys.stderr)
                continue
            raise TrainingError(f"{path}: line {i + 1} is damaged ({e}); repair or delete that line to "
                                "resume") from e
        out.append((ln, rec))
    return out


def _check_resumable(cfg: Config, state: dict, path: Path) -> None:
    from regexplain.registration.checkpoint import checkpoint_config

    old = checkpoint_config(state, path)     # options added since the run was written take their defaults
    if dataclasses.asdict(old.model) != dataclasses.asdict(cfg.model):
        raise TrainingError(f"{path}: cannot resume: stored model config {dataclasses.asdict(old.model)} differs "
                            f"from {dataclasses.asdict(cfg.model)}")
    if list(old.data.shape) != list(cfg.data.shape):
        raise TrainingError(f"{path}: cannot resume: stored working shape {list(old.data.shape)} "
                            f"differs from {list(cfg.data.shape)}")


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, device: torch.device | str | None = None,
          data=None, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; return the final metrics (also written to ``RUN/metrics.json``).

    Args:
        cfg: a validated :class:`Config`.
        run_dir: output directory (created).
        resume: continue from ``RUN/checkpoint.pt`` exactly where it stopped.
        device: ``"cpu"``, ``"cuda"``...; CUDA when present by default.
        data: ``(train VolumeSet, val VolumeSet)``; loaded with ``load_splits(cfg.data)`` when ``None``.
        progress: show a tqdm bar with the loss terms (rank 0 only).
    Raises:
        FileExistsError: ``run_dir`` already holds a checkpoint and ``resume`` is false.
        OutputError, RunInUseError: ``run_dir`` holds other files, or another training (see
            :mod:`regexplain.run_folder`: the folder is locked, and a failed start leaves nothing).
        TrainingError: non-finite loss (names the step and the last good checkpoint), or a checkpoint
            that cannot be resumed with ``cfg``.
    """
    from regexplain.registration.parallel import spawn_training, spawned_processes

    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 owns the folder
        if resume and (done := finished_run(cfg, run_dir)) is not None:
            return done                         # as rank 0 decides: nothing to do
        return Trainer(cfg, run_dir, resume, device, data, progress).loop()
    world = spawned_processes(cfg, device)
    with run_folder(run_dir, resume=resume):
        if resume and (done := finished_run(cfg, run_dir)) is not None:
            return done
        if world > 1:                           # train.processes on the CPU: ranks of this process's own
            return spawn_training(cfg, run_dir, resume, data, progress, world)
        return Trainer(cfg, run_dir, resume, device, data, progress).loop()


def finished_run(cfg: Config, run_dir: Path) -> dict[str, Any] | None:
    """The final metrics of ``run_dir`` when resuming it with ``cfg`` has nothing left to do (its steps all
    trained, or its time budget spent), else None. Such a resume writes nothing (no second final
    validation in the log, the measured ``seconds_per_step`` kept) and says so; a ``metrics.json`` lost to
    a kill after the last checkpoint is written again from it."""
    state = read_checkpoint(run_dir / CHECKPOINT_NAME)
    step, metrics, t = int(state["step"]), dict(state.get("metrics", {})), cfg.train
    if "seconds_per_step" not in metrics:      # only the last checkpoint of a run carries it
        return None
    spent = t.max_minutes > 0 and float(metrics.get("wall_seconds", 0.0)) >= t.max_minutes * 60.0
    if step < t.steps and not spent:
        return None
    if int(os.environ.get("RANK", "0")) == 0:
        if not (run_dir / "metrics.json").is_file():
            write_json(run_dir / "metrics.json", metrics)
        why = (f"{step} of {t.steps} steps trained" if step >= t.steps else
               f"its time budget of {t.max_minutes:g} min spent at step {step} of {t.steps}")
        print(f"regexplain: {run_dir}: already finished ({why}); nothing to do. Pass a larger --steps "
              "(or --max-minutes) to train on", file=sys.stderr)
    return metrics


def learning_rate(t: TrainConfig, step: int) -> float:
    """Adam's learning rate for the step ``step`` (0-based) of ``t.steps``: ``t.lr`` throughout (the authors'
    constant rate) or, with ``t.lr_schedule == "cosine"``, ``t.lr * (1 + cos(pi * step / t.steps)) / 2``, which
    falls from ``t.lr`` to near 0 at the last step (``torch.optim.lr_scheduler.CosineAnnealingLR`` with
    ``eta_min=0`` and ``T_max=t.steps``)."""
    if t.lr_schedule == "constant":
        return t.lr
    return t.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, t.steps) / t.steps))


class Trainer:
    """State of one training session (one process; several under torchrun)."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, device, data, progress: bool):
        from regexplain.adapters.families import build_model
        from regexplain.data.pairs import validation_pairs

        self.cfg, self.run_dir, self.ckpt = cfg, run_dir, run_dir / CHECKPOINT_NAME
        self.ddp, self.device = _init_distributed(device)
        self.share = batch_share(cfg.train.batch_size, self.ddp.rank, self.ddp.world)
        runtime.set_threads(cfg.train.threads)
        runtime.seed_everything(cfg.train.seed)      # same initial weights on every rank
        self.model = build_model(cfg).to(self.device)     # regexplain's network, or an adapter of another family
        # channels_last_3d: 1.1-1.5x faster CPU steps (benchmarks/train_step.py); on CUDA opt-in until measured
        # (train.memory_format; `make gpu-check` times it)
        fmt = cfg.train.memory_format
        cl = fmt == "channels_last" or (fmt == "auto" and self.device.type == "cpu")
        self.memory_format = torch.channels_last_3d if cl else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr)
        self.start, self.elapsed0, self.metrics = 0, 0.0, {}
        self.last_ckpt: Path | None = None
        if resume:
            self._restore()
        # data first: a bad dataset must fail before anything is written into the run folder
        train_set, self.val = _load_data(cfg, data)
        self.groups = train_set.groups
        self.images, self.labels = train_set.images.to(self.device), train_set.labels.to(self.device)
        self.val_pairs = validation_pairs(self.val, cfg.train.n_val_pairs, cfg.data.seed)
        self.log = _Log(run_dir / "log.jsonl", self.ddp.main, self.start if resume else None)
        if self.ddp.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            self.log.start()
        self.net = self.model
        if self.ddp.on:
            ids = [self.device] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.rng = {"scheme": "step_seed(seed, 0, step), the global batch shared by the ranks",
                    "seed": cfg.train.seed, "world_size": self.ddp.world}
        self.progress = progress

    def _restore(self) -> None:
        state = read_checkpoint(self.ckpt, self.device)
        _check_resumable(self.cfg, state, self.ckpt)
        check_state_dict(self.model, state["model"], self.ckpt)
        check_finite(state["model"], self.ckpt)
        self.model.load_state_dict(state["model"])
        if state.get("optimizer"):
            self.opt.load_state_dict(state["optimizer"])
        self.start, self.metrics = int(state["step"]), dict(state.get("metrics", {}))
        self.elapsed0 = float(self.metrics.get("wall_seconds", 0.0))
        self.last_ckpt = self.ckpt

    def loop(self) -> dict[str, Any]:
        t = self.cfg.train
        gen = torch.Generator()
        budget = t.max_minutes * 60.0
        self.t0, step = time.perf_counter(), self.start
        bar = tqdm(total=t.steps, initial=step, disable=not (self.progress and self.ddp.main), desc="train",
                   dynamic_ncols=True)
        self.net.train()
        while step < t.steps:
            raise_if_interrupted()      # a Ctrl-C a library swallowed (regexplain/interrupts.py) stops here
            ts = time.perf_counter()
            stop = budget > 0 and self.elapsed0 + ts - self.t0 >= budget
            if stop and not self.ddp.on:
                break
            gen.manual_seed(step_seed(t.seed, 0, step))      # one global batch; each rank takes its share
            lr = learning_rate(t, step)
            for group in self.opt.param_groups:             # from the step alone: a resumed run continues it
                group["lr"] = lr
            terms = self._step(step, gen, stop)
            if terms is None:           # rank 0 ran out of time: every rank stops together
                break
            step += 1
            self.log.write({"kind": "train", "step": step, **terms, "lr": lr,
                            "seconds": time.perf_counter() - ts})
            bar.update(1)
            bar.set_postfix_str(_fmt(terms), refresh=False)
            if step < t.steps:
                self._periodic(step, bar)
        bar.close()
        return self._finish(step)

    def _step(self, step: int, gen: torch.Generator, stop: bool) -> dict[str, float] | None:
        from regexplain.registration.losses import registration_loss

        moving, fixed, m_oh, f_oh, m_img, f_img = _draw_batch(self.images, self.labels, self.groups, self.cfg,
                                                              gen, self.share, step)
        moving, fixed = (x.contiguous(memory_format=self.memory_format) for x in (moving, fixed))
        amp = self.device.type == "cuda" and self.cfg.train.amp
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            out = self.net(moving, fixed)
        loss, terms = registration_loss(_to_float(out), m_img, f_img, m_oh, f_oh, self.cfg.loss)
        keys = list(terms)
        shared = torch.tensor([float(stop and self.ddp.main), *(terms[k] for k in keys)], device=self.device)
        shared = torch.cat([loss.detach().float().reshape(1), shared])
        if self.ddp.on:
            dist.all_reduce(shared)     # a NaN on any rank reaches all; rank 0's stop decision too
            if shared[1].item() > 0:
                return None
            # the global batch's terms: the mean of the ranks' equal shares
            terms = dict(zip(keys, (shared[2:] / self.ddp.world).tolist(), strict=True))
        if not torch.isfinite(shared[0]):
            raise TrainingError(f"step {step + 1}: non-finite loss ({_fmt(terms)}); last good checkpoint: "
                                f"{self.last_ckpt or 'none written yet'}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return terms

    def _periodic(self, step: int, bar) -> None:
        t = self.cfg.train
        if not self.ddp.main:
            return
        if step % t.val_every == 0:
            scores = self._validate()
            self.metrics.update(scores)
            self.log.write({"kind": "val", "step": step, **scores})
            bar.write(f"step {step}: {_fmt(scores)}")
            self.net.train()
        if step % t.checkpoint_every == 0:
            self.metrics.update(steps=step, wall_seconds=self.elapsed0 + time.perf_counter() - self.t0)
            self.last_ckpt = save_checkpoint(self.ckpt, self.model, self.opt, self.cfg, step, self.metrics,
                                             rng=self.rng)

    def _validate(self) -> dict[str, float]:
        from regexplain.registration.evaluation import validation_scores

        return validation_scores(self.model, self.val, self.val_pairs, self.cfg.data.num_labels,
                                 batch_size=self.cfg.train.batch_size, device=self.device)

    def _finish(self, step: int) -> dict[str, Any]:
        session = time.perf_counter() - self.t0
        m = self.metrics
        if self.ddp.main:
            scores = self._validate()
            m.update(scores)
            self.log.write({"kind": "val", "step": step, **scores})
            m.update(steps=step, wall_seconds=self.elapsed0 + session,
                     seconds_per_step=session / max(step - self.start, 1), world_size=self.ddp.world)
            save_checkpoint(self.ckpt, self.model, self.opt, self.cfg, step, m, rng=self.rng)
            write_json(self.run_dir / "metrics.json", m)
        if self.ddp.on:
            dist.barrier()
            dist.destroy_process_group()
        return m


def _fmt(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
