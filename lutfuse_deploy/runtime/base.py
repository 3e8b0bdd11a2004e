"""One runner contract for every backend (after Polygraphy's BaseRunner).

The base class owns activate/deactivate, ``with`` and the input checks; a backend fills in
``activate_impl``, ``infer_impl`` and ``deactivate_impl``. Every backend takes and returns the same
arrays so results compare directly:

* inputs ``ir`` N x 1 x H x W and ``vi`` N x C x H x W (C = 3 for ``lutfuse``, 1 for MMDRFuse),
  float32 on 0..255 (``io == "float"``) or uint8 (``io == "uint8"``); a runner that carries a rig
  (``rig``: a graph exported with ``--rig``, or a checkpoint run with one) takes each camera's raw
  frame at the rig's sizes instead and returns the fused frame at the rig's output size;
* output ``fused``: N x 3 x H x W on the [0, 1] scale, unclamped (``lutfuse``), or N x 1 x H x W raw
  tanh (MMDRFuse), float32; uint8 io returns uint8 (clamped, rounded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError

INPUT_NAMES = ("ir", "vi")
OUTPUT_NAME = "fused"


def same_size(ir: tuple[int, int], vi: tuple[int, int]) -> str | None:
    """Why an IR and a visible image of these (width, height) cannot be fused, or None: the model
    fuses pixel (x, y) of one with pixel (x, y) of the other, so the sizes must be equal."""
    return None if ir == vi else "IR and visible must have the same size"


def vi_channels(kind: str) -> int:
    """Visible channels a model kind takes: RGB for LUT-Fuse, gray for MMDRFuse."""
    return 3 if kind == "lutfuse" else 1


def rig_size_problem(rig: Any, ir: tuple[int, int], vi: tuple[int, int]) -> str | None:
    """Why raw frames of these (width, height) do not fit the rig's two cameras, or None."""
    for name, got, want in (("IR", ir, rig.ir_size), ("visible", vi, rig.vi_size)):
        if tuple(got) != tuple(want):
            return f"the rig's {name} camera is {want[0]}x{want[1]}"
    return None


def check_rig_sizes(rig: Any, ir_shape: tuple[int, ...], vi_shape: tuple[int, ...]) -> None:
    """Raw frames of a rig must be the cameras' sizes (H, W are the last two dims)."""
    if ir_shape[0] != vi_shape[0]:
        raise InputError(f"ir and vi batches differ ({ir_shape[0]} and {vi_shape[0]})")
    why = rig_size_problem(rig, (ir_shape[-1], ir_shape[-2]), (vi_shape[-1], vi_shape[-2]))
    if why is not None:
        raise InputError(f"ir frame {ir_shape[-1]}x{ir_shape[-2]} and vi frame {vi_shape[-1]}x{vi_shape[-2]}: {why}")


class Runner(ABC):
    """Load once, run many times; ``with runner:`` activates and releases resources."""

    backend: str = "base"

    def __init__(self) -> None:
        self.kind: str = ""
        self.io: str = "float"
        self.metadata: dict[str, Any] = {}
        self.rig: Any = None  # a ``rig.file.Rig`` when the runner takes raw frames of two cameras
        self.is_active = False

    # -- lifecycle -------------------------------------------------------------------------------
    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def check_pair_sizes(self, ir: tuple[int, int], vi: tuple[int, int]) -> str | None:
        """Why this runner cannot fuse an IR image of (width, height) ``ir`` with a visible one of
        ``vi``, or None. Readers ask before fusing, so a pair is refused with its files named. Equal
        sizes here; a runner that warps the IR onto the visible camera (a rig) takes its cameras' sizes."""
        return same_size(ir, vi) if self.rig is None else rig_size_problem(self.rig, ir, vi)

    def output_size(self, vi: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the fused frame for a visible frame of ``vi``: the same, or the rig's output."""
        return vi if self.rig is None else tuple(self.rig.out_size)

    # -- inference -------------------------------------------------------------------------------
    def infer(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Fuse a batch; checks shapes and dtypes first so backends see only valid input."""
        if not self.is_active:
            self.activate()
        self.check_inputs(ir, vi)
        return self.infer_impl(ir, vi)

    def check_inputs(self, ir: np.ndarray, vi: np.ndarray) -> None:
        want = np.uint8 if self.io == "uint8" else np.float32
        c = vi_channels(self.kind)
        for name, arr, ch in (("ir", ir, 1), ("vi", vi, c)):
            if arr.ndim != 4 or arr.shape[1] != ch:
                raise InputError(f"{name}: expected N x {ch} x H x W, got shape {tuple(arr.shape)}")
            if arr.dtype != want:
                raise InputError(f"{name}: expected {np.dtype(want).name}, got {arr.dtype}")
        if self.rig is not None:
            check_rig_sizes(self.rig, ir.shape, vi.shape)
        elif ir.shape[0] != vi.shape[0] or ir.shape[2:] != vi.shape[2:]:
            raise InputError(f"ir {tuple(ir.shape)} and vi {tuple(vi.shape)} differ in batch or size")
        if min(ir.shape[2:]) < 3:
            raise InputError(f"image {ir.shape[3]}x{ir.shape[2]} is smaller than 3x3")

    def activate_impl(self) -> None:
        """Acquire sessions, contexts or device buffers."""

    def deactivate_impl(self) -> None:
        """Release what ``activate_impl`` acquired."""

    @abstractmethod
    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Run the model on already checked inputs."""



def baked_tanh_map(kind: str, io: str, metadata: dict[str, Any]) -> str | None:
    """The tanh-to-8-bit mapping a uint8 MMDRFuse graph or engine has built in; None where fuse chooses.

    A uint8 graph rounds ``tanh * 255`` clamped to 0..255 (``clip``): export records it as
    ``tanh_to_8bit``; graphs exported before the record existed can only hold ``clip``.
    """
    if kind == "lutfuse" or io != "uint8":
        return None
    return str(metadata.get("tanh_to_8bit") or "clip")


def output_tanh_map(runner: Runner, requested: str, explicit: bool) -> tuple[str, str | None]:
    """(the mapping fuse applies, a note or None): the graph's own where it has one built in.

    An explicit ``--tanh-to-8bit`` that differs from the built-in mapping is refused: it could not
    be honoured, and the output would silently differ from the PyTorch run of the same command.
    """
    baked = baked_tanh_map(runner.kind, runner.io, runner.metadata)
    if baked is None or baked == requested:
        return requested, None
    if explicit:
        raise InputError(f"--tanh-to-8bit {requested}: this uint8 {runner.kind} model has the {baked} mapping "
                         f"built in at export; export it with --io float to choose the mapping when fusing")
    return baked, (f"this uint8 {runner.kind} model maps tanh to 8 bits with {baked} (built in at export), "
                   f"not the default {requested}; export with --io float for {requested}")
