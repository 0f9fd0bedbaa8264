"""Typed configuration: dataclasses loaded from YAML profiles (``regexplain/profiles/*.yaml``).

A profile file has a ``common`` section and one section per dataset (``hippocampus``, ``lung``) that
overrides it, e.g. ``load_config("quick", "lung")``. Every value is checked on load; a bad value raises
:class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from regexplain.data.datasets import DATASETS
from regexplain.errors import ConfigError
from regexplain.io import write_text

PROFILE_DIR = Path(__file__).parent / "profiles"
PRECISIONS = ("float32", "bfloat16")  # inference precisions of RegistrationNet.register
ACTIVATIONS = ("sigmoid", "softplus")    # decoder gradient activations (see regexplain.registration.model)
LR_SCHEDULES = ("constant", "cosine")              # train.lr_schedule, the authors' first (registration.train)
SMOOTHNESS = ("l1_identity", "squared_diff", "displacement_l2")   # smoothness terms, the default first
                                                                 # (registration.losses)
LNCC_FLAT = ("voxelmorph", "monai")            # LNCC's guard against flat windows (see regexplain.registration.losses)
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")   # the network's tensors in training
#: the seed study's defaults (regexplain.analysis.study; here so that the CLI reads them without importing torch)
STUDY_SEEDS = 5
STUDY_REGIMES = ("calibrated", "pose")      # `study --regime both`: the calibrated default and pose
#: latent bases (regexplain.analysis.bases, which fits them; here for the torch-free CLI's --basis choices)
BASES = ("pca", "ica", "sparse_pca", "sefa", "supervised", "random_orthonormal")
#: components `regexplain match` compares by default (regexplain.analysis.matching; here for the torch-free CLI)
MATCH_COMPONENTS = 8
#: regexplain.data.synthetic.REGIMES (kept in sync by a test)
PHANTOM_REGIMES = ("calibrated", "pose", "msd_like", "population")
#: MONAI's defaults that set a family's downsamplings (regexplain.adapters.families uses the same)
VOXELMORPH_CHANNELS = (16, 32, 32, 32, 32, 32)
VXM_FEATURES = (16, 16, 16, 16, 16)     # voxelmorph's own VxmPairwise (nb_features: one max-pooling each)
LOCALNET_LEVELS = (0, 1, 2, 3)
#: model families (regexplain.adapters.families builds them): the paper's network, MONAI's VoxelMorph and
#: LocalNet, or any network a factory function returns ("package.module:function")
FAMILIES = ("regexplain", "monai_voxelmorph", "monai_localnet", "voxelmorph", "factory")
#: what a family other than regexplain changes in a profile's recipe: displacement networks are regularised
#: by VoxelMorph's diffusion term at VoxelMorph's weight for a correlation loss (lambda = 1); the paper's
#: smoothness reads the gradients their decoder does not predict (docs/deviations.md)
FAMILY_RECIPE: dict[str, Any] = {"loss": {"smoothness": "displacement_l2", "smooth": 1.0}}


def family_overrides(family: str) -> dict[str, Any]:
    """Config overrides that train ``family`` (:data:`FAMILIES`) on any profile: the family itself and, for
    every family but regexplain's, :data:`FAMILY_RECIPE` (``docs/deviations.md``)."""
    if family == FAMILIES[0]:
        return {"model": {"family": family}}
    return {"model": {"family": family}, **copy.deepcopy(FAMILY_RECIPE)}

#: how a HookAdapter reaches a network (regexplain.adapters.hooks): the bottleneck's output or input, the network
#: called with the pair or the concatenated pair, and what its output is
ADAPTER_HOOKS = ("output", "input")
ADAPTER_INPUTS = ("pair", "concat")
ADAPTER_OUTPUTS = ("displacement", "sampling_map", "grid")



@dataclass
class AugmentConfig:
    """Data augmentation; the defaults are the authors' (``main.py --data-augmentation --affine-transform``,
    ``transformations.py``): ONE transform per pair, applied to both volumes and their labels, always:
    flips (p = 0.5 per axis), a random multiple of 90 degrees in a random plane, a rotation of +-20 degrees
    about one random axis, a translation of +-10 voxels (of their 64^3 crops) and an isotropic zoom of +-0.2.
    ``per_pair=False`` draws rotation, translation and zoom per volume (flips stay per pair), as this
    project did before (with rotation 10, translation 3, zoom 0.1, prob 0.8, no rot90, three axes)."""
    flip_prob: float = 0.5           # per axis
    rot90: bool = True               # k * 90 degrees, k in {1, 2, 3, 4}, in a random plane of equal sizes
    rotation_deg: float = 20.0       # uniform in [-r, r]
    one_axis_rotation: bool = True   # about one random axis (authors); False: about each axis
    translation_vox: float = 10.0    # uniform in [-t, t] along each axis, working-shape voxels
    zoom: float = 0.2                # isotropic factor uniform in [1 - z, 1 + z]
    prob: float = 1.0                # probability that a pair (or volume) is augmented at all
    per_pair: bool = True            # one transform for both volumes of a pair (authors)


@dataclass
class RandomizeConfig:
    """SynthMorph-style domain randomisation of the network's inputs (:mod:`regexplain.data.randomize`,
    docs/deviations.md); the paper has none. Per volume: a random intensity transfer through ``lut_knots``
    random levels (every tissue a random intensity), a Gaussian blur, a smooth bias field, noise and a gamma,
    and with ``crop_prob`` a centred crop box of random size (fractions of the window per axis, the rest set
    to the minimum as a padded real crop). The loss still compares the un-randomised images."""
    enabled: bool = False
    prob: float = 0.9                 # a volume's appearance is randomised (else kept; its crop box still applies)
    per_pair: bool = True             # a pair shares its transfer, blur and gamma (bias, noise, box: per volume)
    ramp_steps: int = 0               # prob rises linearly from 0 over these first steps (0: at once)
    lut_knots: int = 8                # random levels of the intensity transfer function, equally spaced on [0, 1]
    blur_max: float = 1.0             # Gaussian blur sd uniform in [0, blur_max] working voxels
    bias_sd: float = 0.3              # sd of the log of the bias field ...
    bias_grid: int = 4                # ... white noise on a grid^3 lattice, resized smoothly
    noise_max: float = 0.05           # noise sd uniform in [0, noise_max] (intensities in [0, 1])
    gamma_sd: float = 0.25            # log of the gamma exponent ~ N(0, gamma_sd)
    crop_prob: float = 0.0            # probability of a crop box
    crop_min: tuple[float, float, float] = (0.55, 0.75, 0.55)   # box side, fraction of the window, per axis
    crop_max: tuple[float, float, float] = (0.95, 0.95, 0.95)


@dataclass
class DataConfig:
    dataset: str = "hippocampus"
    root: str = "data/hippocampus"
    shape: tuple[int, int, int] = (32, 32, 32)   # working shape fed to the network
    n_subjects: int = 260                        # phantoms synthesised when no data is found
    n_train: int = 200                           # subjects (groups) for training and validation when they
    n_val: int = 60                              # fit the folder, else their ratio (data/split.py)
    split: tuple[float, ...] = ()                # (train, val) fractions of the subjects: used when given
    exact_counts: bool = False                   # n_train / n_val asked for explicitly: they must fit
    num_labels: int = 3                          # background included
    seed: int = 0
    phantom_regime: str = "calibrated"              # phantoms made by the main job: see data.synthetic.REGIMES
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    randomize: RandomizeConfig = field(default_factory=RandomizeConfig)


@dataclass
class AdapterConfig:
    """How regexplain reaches a network that is not its own (``model.family`` other than ``regexplain``;
    :mod:`regexplain.adapters`). The monai families need only ``kwargs`` (their constructor's arguments);
    ``factory`` names any other network, and the rest says where its code is and what its output means."""
    factory: str = ""                # family "factory": "package.module:function" returning the network (an
                                     # nn.Module, or a RegistrationAdapter used as it is)
    kwargs: dict[str, Any] = field(default_factory=dict)   # the factory's / MONAI class's keyword arguments
    bottleneck: str = ""             # module whose output (hook: input) is the code, e.g. "backbone.net.0.1..."
    hook: str = ADAPTER_HOOKS[0]     # output | input
    inputs: str = ADAPTER_INPUTS[0]  # pair: network(moving, fixed); concat: network(cat([moving, fixed], 1))
    output: str = ADAPTER_OUTPUTS[0]   # displacement (voxels) | sampling_map (voxels) | grid (grid_sample's)
    output_key: str = ""             # the deformation's part of a tuple / dict / dataclass output: "1", "phi_mf"
    call: int = 0                    # which call of the bottleneck module in one forward pass
    divisor: int = 1                 # working-shape sizes must be multiples of it (2 ** downsamplings)


@dataclass
class ModelConfig:
    family: str = FAMILIES[0]        # regexplain (the paper's network) | monai_voxelmorph | monai_localnet |
                                     # voxelmorph (VoxelMorph's own VxmPairwise) | factory
    channels: tuple[int, ...] = (8, 16, 32, 32)  # one entry per level; downsamplings = len - 1
    skip_connections: bool = False
    negative_slope: float = 0.2
    activation: str = "sigmoid"      # authors' 2*sigmoid, gradients in (0, 2); "softplus": softplus/ln 2
    convs_per_level: tuple[int, ...] = ()    # authors' nb_Convs; their --classic-vnet: [1, 2, 3, 2, 2, 2]
    deep_supervision: bool = False   # authors' --deep-supervision: coarse levels predict maps too
    adapter: AdapterConfig = field(default_factory=AdapterConfig)   # families other than regexplain


@dataclass
class LossConfig:
    sim: float = 1.0        # LNCC
    seg: float = 1.0        # soft Dice
    smooth: float = 0.1     # alpha
    smoothness: str = SMOOTHNESS[0]   # authors' L1(sigmoid output, 1/2); "squared_diff": |grad g|^2;
                                      # "displacement_l2": VoxelMorph's Grad('l2') of the displacement
    jac: float = 0.0        # beta (paper: 1 lung, 0 hippocampus)
    deep_terms: tuple[str, ...] = ("sim",)   # with model.deep_supervision: terms averaged over the levels
                                             # (authors: the image similarity only); may add "seg"
    lncc_window: int = 9
    lncc_flat: str = "voxelmorph"    # authors' (VoxelMorph's) cross^2/(var var + eps); "monai": eps floors each var


@dataclass
class TrainConfig:
    lr: float = 1e-3
    lr_schedule: str = LR_SCHEDULES[0]   # authors: constant; "cosine": half a cosine from lr down to 0 at train.steps
    batch_size: int = 4
    steps: int = 1000
    max_minutes: float = 0.0         # 0: no wall-clock budget
    val_every: int = 200
    checkpoint_every: int = 200
    n_val_pairs: int = 30
    seed: int = 0
    amp: bool = True                 # bf16 autocast on CUDA only
    threads: int = 0                 # torch CPU threads per process; 0: torch's default (1 per spawned rank)
    processes: int = 1               # CPU data-parallel ranks spawned by the trainer (batch split over them)
    memory_format: str = "auto"      # auto: channels_last_3d on the CPU, contiguous on CUDA; or either one


@dataclass
class LatentConfig:
    n_components: int = 32
    null_draws: int = 20    # random bases per score null in notebooks 07 (all) and 08 (half): the reports' n_null


@dataclass
class Config:
    profile: str = "quick"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings of regexplain's network (``model.channels``)."""
        return len(self.model.channels) - 1

    @property
    def divisor(self) -> int:
        """Every working-shape size must be a multiple of it: ``2 ** downsamplings`` of the model's family
        (MONAI's VoxelMorph: one per pair of ``channels``; LocalNet: ``max(extract_levels)``)."""
        m = self.model
        if m.family == "regexplain":
            return 2 ** self.depth
        if m.family == "monai_voxelmorph":
            return 2 ** (len(m.adapter.kwargs.get("channels", VOXELMORPH_CHANNELS)) // 2)
        if m.family == "monai_localnet":
            return 2 ** max(m.adapter.kwargs.get("extract_levels", LOCALNET_LEVELS))
        if m.family == "voxelmorph":
            return 2 ** len(m.adapter.kwargs.get("nb_features", VXM_FEATURES))
        return max(1, int(m.adapter.divisor))


def merge_overrides(base: dict, over: dict) -> dict:
    """``base`` with the nested mapping ``over`` merged in (sections merge key by key; other values replace)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = merge_overrides(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{where}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)} in '{where}'; known: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        kwargs[f.name] = _coerce(hints[f.name], values[f.name], f"{where}.{f.name}", source)
    return cls(**kwargs)


def _coerce(tp, value, where: str, source: str):
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: '{where}' must have {len(args)} entries, got {list(value)}")
        return tuple(_coerce(args[0], v, where, source) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{where}' must be true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{where}' must be a number, got {value!r}")
        if tp is int and float(value) != int(value):
            raise ConfigError(f"{source}: '{where}' must be an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{where}' must be a string, got {value!r}")
        return value
    return value


def validate(cfg: Config, source: str = "config") -> Config:
    """Reject impossible values with a message naming the key."""
    def need(cond: bool, msg: str):
        if not cond:
            raise ConfigError(f"{source}: {msg}")

    for where, value in _numbers(cfg):   # .inf / .nan in YAML: no comparison below would catch them
        need(math.isfinite(value), f"{where} must be a finite number, got {value}")
    d, m, lo, t = cfg.data, cfg.model, cfg.loss, cfg.train
    need(d.dataset in DATASETS, f"data.dataset must be one of {tuple(DATASETS)}, got {d.dataset!r}")
    need(len(m.channels) >= 2 and all(c > 0 for c in m.channels),
         f"model.channels needs at least two positive entries, got {list(m.channels)}")
    _validate_adapter(m, need)
    f = cfg.divisor
    need(all(s > 0 and s % f == 0 for s in d.shape),
         f"data.shape {list(d.shape)} must be divisible by 2^{f.bit_length() - 1} = {f} "
         f"({f.bit_length() - 1} downsamplings from "
         f"{'model.channels' if m.family == 'regexplain' else 'model family ' + m.family})")
    need(d.phantom_regime in PHANTOM_REGIMES,
         f"data.phantom_regime must be one of {PHANTOM_REGIMES}, got {d.phantom_regime!r}")
    need(not m.convs_per_level or (len(m.convs_per_level) >= cfg.depth and min(m.convs_per_level) >= 1),
         f"model.convs_per_level must be empty or hold at least {cfg.depth} entries >= 1 (one per "
         f"downsampling), got {list(m.convs_per_level)}")
    need(m.activation in ACTIVATIONS, f"model.activation must be one of {ACTIVATIONS}, got {m.activation!r}")
    need(lo.smoothness in SMOOTHNESS, f"loss.smoothness must be one of {SMOOTHNESS}, got {lo.smoothness!r}")
    need(lo.lncc_flat in LNCC_FLAT, f"loss.lncc_flat must be one of {LNCC_FLAT}, got {lo.lncc_flat!r}")
    need(d.num_labels >= 2, f"data.num_labels must be >= 2, got {d.num_labels}")
    need(d.n_train > 0 and d.n_val > 0, "data.n_train and data.n_val must be positive")
    need(len(d.split) in (0, 2) and all(0 < f < 1 for f in d.split) and sum(d.split) <= 1 + 1e-9,
         f"data.split must be empty or two fractions (train, val) in (0, 1) summing to at most 1, got "
         f"{list(d.split)}")
    need(d.n_subjects >= 4, f"data.n_subjects must be >= 4 (2 train + 2 val), got {d.n_subjects}")
    for k in ("sim", "seg", "smooth", "jac"):
        need(getattr(lo, k) >= 0, f"loss.{k} must be >= 0, got {getattr(lo, k)}")
    need(set(lo.deep_terms) <= {"sim", "seg"}, f"loss.deep_terms may hold 'sim' and 'seg', got {list(lo.deep_terms)}")
    need(lo.lncc_window >= 3 and lo.lncc_window % 2 == 1,
         f"loss.lncc_window must be odd and >= 3, got {lo.lncc_window}")
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(t.lr_schedule in LR_SCHEDULES, f"train.lr_schedule must be one of {LR_SCHEDULES}, got {t.lr_schedule!r}")
    need(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    need(t.memory_format in MEMORY_FORMATS,
         f"train.memory_format must be one of {MEMORY_FORMATS}, got {t.memory_format!r}")
    need(t.processes >= 1, f"train.processes must be >= 1, got {t.processes}")
    need(t.batch_size % t.processes == 0,
         f"train.batch_size {t.batch_size} must be a multiple of train.processes {t.processes} (each process "
         "trains on an equal share of the batch)")
    need(t.steps >= 1, f"train.steps must be >= 1, got {t.steps}")
    need(t.max_minutes >= 0, f"train.max_minutes must be >= 0, got {t.max_minutes}")
    need(t.val_every >= 1 and t.checkpoint_every >= 1, "train.val_every and checkpoint_every must be >= 1")
    a = d.augment
    need(0 <= a.flip_prob <= 1 and 0 <= a.prob <= 1, "augment probabilities must lie in [0, 1]")
    need(a.rotation_deg >= 0 and a.translation_vox >= 0 and 0 <= a.zoom < 1,
         "augment ranges must be >= 0 (zoom in [0, 1))")
    r = d.randomize
    need(0 <= r.prob <= 1 and 0 <= r.crop_prob <= 1, "data.randomize probabilities must lie in [0, 1]")
    need(r.lut_knots >= 2 and r.bias_grid >= 2, "data.randomize.lut_knots and bias_grid must be >= 2")
    need(r.ramp_steps >= 0, f"data.randomize.ramp_steps must be >= 0, got {r.ramp_steps}")
    need(min(r.blur_max, r.bias_sd, r.noise_max, r.gamma_sd) >= 0, "data.randomize ranges must be >= 0")
    need(len(r.crop_min) == 3 and len(r.crop_max) == 3
         and all(0 < a <= b <= 1 for a, b in zip(r.crop_min, r.crop_max, strict=True)),
         f"data.randomize.crop_min / crop_max need three fractions with 0 < min <= max <= 1, got "
         f"{list(r.crop_min)} / {list(r.crop_max)}")
    need(cfg.latent.n_components >= 1, f"latent.n_components must be >= 1, got {cfg.latent.n_components}")
    need(cfg.latent.null_draws >= 2, f"latent.null_draws must be >= 2, got {cfg.latent.null_draws}")
    return cfg


def _numbers(obj, where: str = "") -> Iterator[tuple[str, float]]:
    """``("section.key", value)`` for every float of a config (inside tuples too: ``data.split[0]``)."""
    if is_dataclass(obj):
        for f in fields(obj):
            yield from _numbers(getattr(obj, f.name), f"{where}.{f.name}" if where else f.name)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        yield where, obj


def _validate_adapter(m: ModelConfig, need) -> None:
    a = m.adapter
    need(m.family in FAMILIES, f"model.family must be one of {FAMILIES}, got {m.family!r}")
    need(isinstance(a.kwargs, dict) and all(isinstance(k, str) for k in a.kwargs),
         f"model.adapter.kwargs must be a mapping of argument names, got {a.kwargs!r}")
    need(a.hook in ADAPTER_HOOKS, f"model.adapter.hook must be one of {ADAPTER_HOOKS}, got {a.hook!r}")
    need(a.inputs in ADAPTER_INPUTS, f"model.adapter.inputs must be one of {ADAPTER_INPUTS}, got {a.inputs!r}")
    need(a.output in ADAPTER_OUTPUTS, f"model.adapter.output must be one of {ADAPTER_OUTPUTS}, got {a.output!r}")
    need(a.call >= 0 and a.divisor >= 1, f"model.adapter.call must be >= 0 and divisor >= 1, got {a.call}, "
         f"{a.divisor}")
    if m.family == "factory":
        mod, _, fn = a.factory.partition(":")
        need(bool(mod) and bool(fn) and all(p.isidentifier() for p in (*mod.split("."), fn)),
             f"model.adapter.factory must read 'package.module:function', got {a.factory!r}")
    if m.family == "monai_voxelmorph":
        ch = a.kwargs.get("channels", VOXELMORPH_CHANNELS)
        need(isinstance(ch, (list, tuple)) and len(ch) >= 2 and len(ch) % 2 == 0,
             f"model.adapter.kwargs.channels of monai_voxelmorph must be an even number of channels, got {ch!r}")
    if m.family == "monai_localnet":
        lv = a.kwargs.get("extract_levels", LOCALNET_LEVELS)
        need(isinstance(lv, (list, tuple)) and len(lv) >= 1 and all(isinstance(v, int) and v >= 0 for v in lv),
             f"model.adapter.kwargs.extract_levels of monai_localnet must be levels >= 0, got {lv!r}")


def profile_path(profile: str | Path) -> Path:
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PROFILE_DIR / f"{profile}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _read_profile(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The profile at ``path`` as a mapping of sections, its ``extends: <profile>`` base (a name in the
    profiles folder or a YAML path beside it) merged under it section by section."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such profile (available: {available_profiles()})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a profile must be a mapping with a 'common' section and one section per "
                          f"dataset {tuple(DATASETS)}, got a {type(raw).__name__}")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'extends' must name one profile, got {base!r}")
    base_path = profile_path(base)
    if base_path.suffix and not base_path.is_absolute() and base_path.parent == Path("."):
        base_path = path.parent / base_path          # a YAML file named beside the profile that extends it
    if base_path.resolve() in {p.resolve() for p in (*chain, path)}:
        raise ConfigError(f"{path}: 'extends: {base}' makes a cycle")
    below = _read_profile(base_path, (*chain, path))
    # an empty section keeps the base's
    return merge_overrides(below, {k: v for k, v in raw.items() if v is not None})


def load_config(profile: str | Path = "quick", dataset: str = "hippocampus",
                overrides: dict[str, Any] | None = None) -> Config:
    """Load ``profile`` (a name in :func:`available_profiles` or a YAML path) for ``dataset``.

    ``overrides`` is a nested dict applied last, e.g. ``{"train": {"steps": 10}}``.
    """
    path = profile_path(profile)
    raw = _read_profile(path)
    if dataset not in DATASETS:
        raise ConfigError(f"{path}: unknown dataset {dataset!r}; expected one of {tuple(DATASETS)}")
    for section in ("common", dataset):
        if not isinstance(raw.get(section) or {}, dict):
            raise ConfigError(f"{path}: section '{section}' must be a mapping, got "
                              f"{type(raw[section]).__name__}")
    values = merge_overrides(raw.get("common") or {}, raw.get(dataset) or {})
    spec, data = DATASETS[dataset], values.setdefault("data", {})
    for key, value in (("root", f"data/{dataset}"), ("num_labels", spec.num_labels),
                       ("n_subjects", spec.synth_count)):
        data.setdefault(key, value)     # a dataset without a profile section still gets its own folder
    values = merge_overrides(values, overrides or {})
    values.setdefault("data", {})["dataset"] = dataset
    values["profile"] = path.stem
    return validate(_build(Config, values, "config", str(path)), str(path))


def override(cfg: Config, overrides: dict[str, Any] | None, source: str = "overrides") -> Config:
    """``cfg`` with nested ``overrides`` (e.g. ``{"data": {"root": "x"}, "train": {"steps": 10}}``) merged in
    by the profiles' rule and validated as a profile is (:class:`ConfigError` naming ``source``); ``cfg``
    itself is unchanged."""
    if not overrides:
        return cfg
    return config_from_dict(merge_overrides(asdict(cfg), overrides), source=source)


def config_from_dict(values: dict[str, Any], source: str = "checkpoint") -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. stored in a checkpoint)."""
    return validate(_build(Config, values, "config", source), source)


def save_config(cfg: Config, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
