"""Any registration network through forward hooks: name its bottleneck module, and regexplain reads the code
there and writes codes back there.

``HookAdapter(network, "backbone.net.0.1.submodule...")`` wraps a module that maps a pair to a deformation:

* ``inputs="pair"`` calls ``network(moving, fixed)`` (MONAI's ``VoxelMorph``, VoxelMorph's ``VxmDense``);
  ``inputs="concat"`` calls ``network(torch.cat([moving, fixed], 1))`` (MONAI's ``LocalNet``,
  ``VoxelMorphUNet``).
* ``output_key`` picks the deformation out of a tuple, list, dict or dataclass output (``1`` for
  ``VoxelMorph``'s ``(warped, ddf)``; ``"phi_mf"`` for regexplain's own network).
* ``output`` says what it is, and how it becomes regexplain's displacement ``u`` in voxels
  (:mod:`regexplain.registration.spatial`):

  - ``"displacement"``: ``(B, 3, D, H, W)`` voxel offsets, channels in array-axis order, sampled as
    ``moving(x + u(x))`` with ``align_corners=True``: MONAI's DDF and VoxelMorph's flow (taken as it is);
  - ``"sampling_map"``: ``(B, 3, D, H, W)`` absolute voxel coordinates ``x + u(x)`` (``u = map - x``);
  - ``"grid"``: ``(B, D, H, W, 3)`` ``grid_sample`` coordinates in ``[-1, 1]``, last axis ``(x, y, z) =
    (W, H, D)``, ``align_corners=True`` (:func:`~regexplain.registration.spatial.grid_to_voxel`).

* ``hook="output"`` takes the module's output as the code; ``hook="input"`` its first input (for a fusion
  that happens outside any module, e.g. the input of regexplain's own decoder); ``call`` which call of the
  module within one forward pass (0: the first).

Encoding runs the network until the bottleneck and stops there. The context of a pair is the pair itself:
decoding runs the whole network on it with the bottleneck's activation replaced by the code, so the skip
features are that pair's ("frozen skips"). When the activation holds more rows than the pair (a network
that stacks both directions in one batch), the code replaces the first rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regexplain.adapters.base import RegistrationAdapter, expand
from regexplain.config import ADAPTER_HOOKS as HOOKS
from regexplain.config import ADAPTER_INPUTS as INPUTS
from regexplain.config import ADAPTER_OUTPUTS as OUTPUTS
from regexplain.errors import AdapterError
from regexplain.registration import spatial


class _Stop(Exception):
    """Raised by the capturing hook: the rest of the forward pass is not needed."""


class HookAdapter(RegistrationAdapter):
    """Early-fusion adapter of ``network`` through its module ``bottleneck`` (see the module docstring).

    Raises:
        AdapterError: an unknown ``hook`` / ``inputs`` / ``output``, or no module named ``bottleneck``
            (listing the modules with their output shapes for a blank pair of ``shape`` when given).
    """

    def __init__(self, network: nn.Module, bottleneck: str, *, hook: str = "output", inputs: str = "pair",
                 output: str = "displacement", output_key: int | str | None = None, call: int = 0,
                 divisor: int = 1, shape: Sequence[int] | None = None):
        super().__init__(network, divisor=divisor)
        for name, value, allowed in (("hook", hook, HOOKS), ("inputs", inputs, INPUTS), ("output", output, OUTPUTS)):
            if value not in allowed:
                raise AdapterError(f"adapter {name} must be one of {allowed}, got {value!r}")
        self.bottleneck, self.hook, self.inputs, self.output = bottleneck, hook, inputs, output
        self.output_key = _key(output_key)
        self.call = int(call)
        if self.call < 0:
            raise AdapterError(f"adapter call must be >= 0, got {call}")
        self._probe = tuple(int(s) for s in shape) if shape is not None else (max(32, 2 * self.divisor),) * 3
        self._target()                               # fail now, not at the first encode
        if shape is not None:
            self.check_shape(shape)

    # ------------------------------------------------------------------------------- plumbing
    def _target(self) -> nn.Module:
        try:
            return self.network.get_submodule(self.bottleneck) if self.bottleneck else self.network
        except AttributeError:
            raise AdapterError(f"no module {self.bottleneck!r} in {type(self.network).__name__}; "
                               f"{candidates_line(self.network, self.inputs, self._probe)}") from None

    def _run(self, moving: Tensor, fixed: Tensor):
        if moving.shape != fixed.shape:
            raise AdapterError(f"moving {tuple(moving.shape)} and fixed {tuple(fixed.shape)} differ in shape")
        if self.inputs == "pair":
            return self.network(moving, fixed)
        return self.network(torch.cat([moving, fixed], dim=1))

    def _hooked(self, fn: Callable[[Tensor], Tensor | None]):
        """Register ``fn`` on the ``call``-th call of the bottleneck (its output or first input); it returns
        a replacement or ``None``. Returns the handle."""
        count = [0]
        target = self._target()

        def on_output(module, args, out):
            k, count[0] = count[0], count[0] + 1
            return fn(out) if k == self.call else None

        def on_input(module, args):
            k, count[0] = count[0], count[0] + 1
            if k != self.call:
                return None
            new = fn(args[0] if args else None)
            return None if new is None else (new, *args[1:])

        if self.hook == "output":
            return target.register_forward_hook(on_output), count
        return target.register_forward_pre_hook(on_input), count

    def _activation(self, value, n: int) -> Tensor:
        where = f"{self.hook} of module {self.bottleneck!r}"
        if not torch.is_tensor(value):
            raise AdapterError(f"the {where} is a {type(value).__name__}, not a tensor; name a module whose "
                               f"{self.hook} is one tensor")
        if value.shape[0] < n:
            raise AdapterError(f"the {where} has {value.shape[0]} rows for a batch of {n} pairs")
        return value

    def _never_called(self, count: list[int]) -> AdapterError:
        return AdapterError(f"module {self.bottleneck!r} was called {count[0]} time(s) in a forward pass of "
                            f"{type(self.network).__name__}, so call {self.call} never came")

    def _to_displacement(self, out, moving: Tensor) -> Tensor:
        y = select_output(out, self.output_key)
        n, shape = moving.shape[0], tuple(moving.shape[2:])
        if not torch.is_tensor(y):
            raise AdapterError(f"the network's output{_where(self.output_key)} is a {type(y).__name__}, not a "
                               "tensor; set output_key to the part that holds the deformation")
        y = y[:n].float()
        want = (n, *shape, 3) if self.output == "grid" else (n, 3, *shape)
        if tuple(y.shape) != want:
            raise AdapterError(f"the network's output{_where(self.output_key)} {tuple(y.shape)} is not a "
                               f"{self.output} {want} for a pair of {tuple(moving.shape)}")
        if self.output == "displacement":
            return y
        phi = spatial.grid_to_voxel(y) if self.output == "grid" else y
        return spatial.map_to_displacement(phi)

    # ------------------------------------------------------------------------------ interface
    def encode(self, moving: Tensor, fixed: Tensor) -> Tensor:
        n, box = moving.shape[0], {}

        def capture(value):
            box["z"] = self._activation(value, n)[:n].clone()
            raise _Stop

        handle, count = self._hooked(capture)
        try:
            self._run(moving, fixed)
        except _Stop:
            pass
        finally:
            handle.remove()
        if "z" not in box:
            raise self._never_called(count)
        return box["z"]

    def context(self, moving: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor]:
        return moving.detach(), fixed.detach()

    def decode(self, code: Tensor, context: Any = None) -> Tensor:
        if context is None:
            raise AdapterError(f"{type(self).__name__} decodes with the skips of a reference pair: pass the "
                               "context of one (adapter.context(moving, fixed))")
        n = code.shape[0]
        moving, fixed = (expand(t, n).to(code.device) for t in context)
        done = []

        def replace(value):
            value = self._activation(value, n)
            if tuple(value.shape[1:]) != tuple(code.shape[1:]):
                raise AdapterError(f"code {tuple(code.shape[1:])} does not match the {self.hook} of module "
                                   f"{self.bottleneck!r} {tuple(value.shape[1:])} for a pair of "
                                   f"{tuple(moving.shape[2:])}")
            done.append(True)
            new = code.to(value.dtype).clone()
            if value.shape[0] == n:
                return new
            rest = value.clone()
            rest[:n] = new
            return rest

        handle, count = self._hooked(replace)
        try:
            out = self._run(moving, fixed)
        finally:
            handle.remove()
        if not done:
            raise self._never_called(count)
        return self._to_displacement(out, moving)

    def displacement(self, moving: Tensor, fixed: Tensor) -> Tensor:
        return self._to_displacement(self._run(moving, fixed), moving)


def _key(key: int | str | None) -> int | str | None:
    if key is None or key == "":
        return None
    if isinstance(key, str) and key.lstrip("-").isdigit():
        return int(key)
    return key


def _where(key) -> str:
    return "" if key is None else f"[{key!r}]"


def select_output(out, key: int | str | None):
    """The part ``key`` of a network's output: an index into a tuple or list, a key of a dict, a field of a
    dataclass; ``None`` for a tensor output. :class:`AdapterError` names the choices otherwise."""
    if key is None:
        if isinstance(out, (tuple, list)):
            raise AdapterError(f"the network returns a {type(out).__name__} of {len(out)}; set output_key to the "
                               f"index of the deformation (0 .. {len(out) - 1})")
        if isinstance(out, dict) or dataclasses.is_dataclass(out):
            names = list(out) if isinstance(out, dict) else [f.name for f in dataclasses.fields(out)]
            raise AdapterError(f"the network returns a {type(out).__name__}; set output_key to one of {names}")
        return out
    try:
        if isinstance(out, (tuple, list)):
            return out[int(key)]
        if isinstance(out, dict):
            return out[key]
        return getattr(out, str(key))
    except (IndexError, KeyError, AttributeError, ValueError, TypeError):
        raise AdapterError(f"output_key {key!r}: the network's {type(out).__name__} output has no such part") \
            from None


def module_outputs(network: nn.Module, inputs: str = "pair", shape: Sequence[int] = (32, 32, 32)
                   ) -> list[tuple[str, str]]:
    """``(name, output shape)`` of every named module, in the order of their first call, for a blank pair of
    ``shape`` (the way to find a network's bottleneck). Modules not called are left out."""
    seen: dict[str, str] = {}
    handles = []
    for name, module in network.named_modules():
        if not name:
            continue

        def record(mod, args, out, name=name):
            if name not in seen:
                seen[name] = str(tuple(out.shape)) if torch.is_tensor(out) else type(out).__name__
        handles.append(module.register_forward_hook(record))
    blank = torch.zeros(1, 1, *shape, device=next(network.parameters(), torch.zeros(())).device)
    try:
        with torch.no_grad():
            network(blank, blank) if inputs == "pair" else network(torch.cat([blank, blank], 1))
    finally:
        for h in handles:
            h.remove()
    return list(seen.items())


def candidates_line(network: nn.Module, inputs: str = "pair", shape: Sequence[int] = (32, 32, 32)) -> str:
    """The modules of ``network`` with their output shapes, on one line (for an error message)."""
    try:
        rows = module_outputs(network, inputs, shape)
        what = f"modules (output shape for a blank {tuple(shape)} pair)"
    except Exception as e:   # noqa: BLE001 - a network that cannot run on a blank pair: names only
        rows = [(n, type(m).__name__) for n, m in network.named_modules() if n]
        what = f"modules (a blank {tuple(shape)} pair did not run: {type(e).__name__})"
    return f"{what}: " + ", ".join(f"{n} {s}" for n, s in rows)
