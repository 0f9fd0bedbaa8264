"""``regexplain network modules | import | share``: bring your own registration network.

A network is described by a profile YAML (``model.family`` and ``model.adapter``, ``docs/your_network.md``):
``modules`` lists its modules with their output shapes (to find the bottleneck), ``import`` turns weights
trained elsewhere into a run folder that every other command opens (``decompose``, ``casestudy``, ``explore``,
``evaluate``, ``register``), and ``share`` measures how much of its deformation the bottleneck controls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from regexplain.commands.options import add_data_options, data_overrides, int_at_least, seed_value
from regexplain.data.datasets import DATASETS


def register(subparsers) -> None:
    p = subparsers.add_parser("network", help="your own registration network: list its modules, import its "
                              "weights as a run, measure its bottleneck share")
    sub = p.add_subparsers(dest="network_command", required=True, metavar="ACTION")

    m = sub.add_parser("modules", help="every module of the network with its output shape for a blank pair "
                       "(to choose model.adapter.bottleneck)")
    _profile_options(m)
    m.set_defaults(func=_modules)

    i = sub.add_parser("import", help="weights trained elsewhere -> a run folder (checkpoint.pt, config.yaml, "
                       "metrics.json with the validation Dice)")
    _profile_options(i)
    add_data_options(i, "data folder whose validation pairs score the network (default: the profile's)")
    i.add_argument("--weights", required=True, type=Path,
                   help="a state dict of the network (torch.save), or a checkpoint dict holding one under "
                        "'state_dict', 'model' or 'model_state_dict'")
    i.add_argument("--out", required=True, type=Path, help="new run folder")
    i.set_defaults(func=_import)

    s = sub.add_parser("share", help="the bottleneck share of a run's deformations (docs/your_network.md) "
                       "beside an untrained network of the same architecture")
    s.add_argument("--model", required=True, help="checkpoint file or run directory")
    add_data_options(s, "data folder (default: the run's)")
    s.add_argument("--pairs", type=int_at_least(1), default=30, help="validation pairs (default 30)")
    s.add_argument("--seed", type=seed_value, default=0, help="seed of the untrained baseline (default 0)")
    s.add_argument("--out", type=Path, help="JSON file for the result (default: print only)")
    s.set_defaults(func=_share)


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True,
                   help="a profile YAML describing the network (model.family, model.adapter), or a profile name")
    p.add_argument("--dataset", choices=tuple(DATASETS), default="hippocampus",
                   help="the profile section to read (default hippocampus)")


def _config(args: argparse.Namespace, data: dict | None = None):
    from regexplain.config import load_config

    return load_config(args.profile, args.dataset, {"data": data} if data else None)


def _modules(args: argparse.Namespace) -> int:
    from regexplain.adapters.families import build_model, load_factory
    from regexplain.adapters.hooks import module_outputs
    from regexplain.errors import AdapterError

    cfg = _config(args)
    a = cfg.model.adapter
    if cfg.model.family == "factory":     # the bare network: its bottleneck may not be named yet
        try:
            net, inputs, chosen = load_factory(a.factory)(**a.kwargs), a.inputs, a.bottleneck
        except AdapterError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code, in one line
            raise AdapterError(f"model.adapter.factory {a.factory!r} failed: {type(e).__name__}: {e}") from e
        net = getattr(net, "network", net)      # a factory may return an adapter
    else:
        model = build_model(cfg)
        net = getattr(model, "network", model)
        inputs, chosen = getattr(model, "inputs", "pair"), getattr(model, "bottleneck", "")
    rows = module_outputs(net, inputs, tuple(cfg.data.shape))
    width = max(len(n) for n, _ in rows) if rows else 0
    print(f"{type(net).__name__}, a blank pair of {tuple(cfg.data.shape)} ({inputs}); the code is the output "
          "of the module marked <- (model.adapter.bottleneck)")
    for name, shape in rows:
        print(f"{name:<{width}}  {shape}{'  <-' if name == chosen else ''}")
    return 0


def load_weights(path: Path):
    """A state dict from ``path`` (``torch.load(weights_only=True)``): the dict itself or the one stored under
    ``state_dict`` / ``model`` / ``model_state_dict``, without a DDP ``module.`` prefix."""
    import torch

    from regexplain.errors import CheckpointError
    from regexplain.registration.checkpoint import strip_prefix

    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, not torch, or pickled code refused
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {first})") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return strip_prefix(state)


def _import(args: argparse.Namespace) -> int:
    from regexplain.adapters.families import build_model
    from regexplain.config import save_config
    from regexplain.data.pairs import load_splits, validation_pairs
    from regexplain.io import write_json
    from regexplain.registration.checkpoint import check_finite, check_state_dict, save_checkpoint
    from regexplain.registration.evaluation import validation_scores
    from regexplain.run_folder import run_folder

    cfg = _config(args, data_overrides(args))
    model = build_model(cfg)
    net = getattr(model, "network", model)
    weights = load_weights(args.weights)
    check_state_dict(net, weights, args.weights)
    check_finite(weights, args.weights)
    net.load_state_dict(weights)
    model.eval()
    _, val = load_splits(cfg.data)           # a bad folder fails before anything is written
    with run_folder(args.out, resume=False):
        scores = validation_scores(model, val, validation_pairs(val, cfg.train.n_val_pairs, cfg.data.seed),
                                   cfg.data.num_labels)
        metrics = {**scores, "steps": 0, "imported": str(args.weights.absolute())}
        save_config(cfg, args.out / "config.yaml")
        save_checkpoint(args.out / "checkpoint.pt", model, None, cfg, 0, metrics)
        write_json(args.out / "metrics.json", metrics)
    print(f"imported {args.weights} ({cfg.model.family}) into {args.out}: validation Dice "
          f"{scores['dice_before']:.3f} -> {scores['dice_after']:.3f}")
    return 0


def _share(args: argparse.Namespace) -> int:
    from regexplain.analysis.inputs import decompose_run
    from regexplain.analysis.share import bottleneck_share, untrained_model
    from regexplain.data.pairs import validation_pairs
    from regexplain.io import check_writable, write_json
    from regexplain.registration.checkpoint import checkpoint_path
    from regexplain.runs import open_run

    if args.out is not None:
        check_writable(args.out.parent)
    run = open_run(args.model, device="cpu", data=data_overrides(args), decomposition=True)
    pairs = validation_pairs(run.val, args.pairs, run.cfg.data.seed)
    trained = bottleneck_share(run.model, run.decomposition, run.val.images, pairs)
    blank = untrained_model(run.cfg, args.seed)
    blank_dec, _ = decompose_run(blank, run.cfg, checkpoint_path(args.model), run.train, run.val)
    untrained = bottleneck_share(blank, blank_dec, run.val.images, pairs)
    out = {"run": str(run.run_dir), "family": run.cfg.model.family, "K": run.decomposition.n_components,
           "trained": trained, "untrained": untrained}
    print(f"{run.run_dir}: bottleneck share {trained['bottleneck_share']:.3f} (untrained "
          f"{untrained['bottleneck_share']:.3f}), skip share {trained['skip_share']:.3f}, over {len(pairs)} "
          f"validation pairs, K = {run.decomposition.n_components}, mean |u| {trained['mean_norm']:.2f} voxels")
    if args.out is not None:
        write_json(args.out, out)
    return 0
