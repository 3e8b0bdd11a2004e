"""Export verifies itself: the new graph in ONNX Runtime against float64 truth.

Truth for an input is the project's PyTorch model run in float64 (weights and input cast to double).
The official LUT-Fuse context network is ill-conditioned, so PyTorch's own float32 output is up to
~2e-4 from truth on some real pairs; matching another program's float32 roundings is not accuracy.
The rule (``PARITY_RULE``), with ``e_off`` = max |PyTorch float32 - truth| on the same input:

* max |graph - truth| <= max(1e-4, 2 * e_off), on the [0, 1] scale (raw tanh for MMDRFuse), and
* the 8-bit images (clamp to [0, 1], x255, round) differ from truth's by at most 1 at every pixel.

uint8-io graphs output the 8-bit image itself, so only the second half applies to them. The rule is
ours, so the comparison is written here; Polygraphy's ``OnnxrtRunner`` runs the graph.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import ExportError, MissingDependency
from lutfuse_deploy.export.ort_options import DEFAULT_LEVEL, session_options

FLOAT_ATOL = 1e-4
UINT8_ATOL = 1.0
PARITY_RULE = ("max |graph - float64 truth| <= max(1e-4, 2 * max |PyTorch float32 - truth|), "
               "and 8-bit images within 1 LSB of truth's")
# Synthetic sizes for dynamic graphs: one even, one odd (odd sizes catch off-by-one padding).
DYNAMIC_SIZES = ((48, 80), (37, 59))
REAL_SETS = ("msrs_test", "roadscene")  # first pair of each, when the shared data is present


@dataclass(frozen=True)
class ParityInput:
    name: str
    ir: np.ndarray  # N x 1 x H x W float32 0..255 (integers)
    vi: np.ndarray  # N x C x H x W


def to_uint8(fused: np.ndarray) -> np.ndarray:
    """The uint8 io convention (same formula as ``runtime.torch.to_uint8``; a test checks they agree)."""
    return np.clip(np.rint(fused * 255.0), 0, 255).astype(np.uint8)


def _round_to(n: int, multiple: int) -> int:
    return max(multiple, n - n % multiple)


def synthetic_inputs(channels: int, hw: tuple[int, int] | None, multiple: int, seed: int = 0) -> list[ParityInput]:
    """Seeded noise (batch 2), smooth ramps and saturated blocks (exercise clamps and the top cell)."""
    rng = np.random.default_rng(seed)
    sizes = [hw] if hw else [(_round_to(h, multiple), _round_to(w, multiple)) for h, w in DYNAMIC_SIZES]
    out = []
    for h, w in sizes:
        tag = f"{h}x{w}"
        noise = rng.integers(0, 256, size=(2, 1 + channels, h, w)).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramps = [(np.sin(xx / 7.0 + k) * np.cos(yy / 11.0 - k) + 1.0) * 127.5 for k in range(1 + channels)]
        smooth = np.rint(np.stack(ramps)[None]).astype(np.float32)
        blocks = np.where(((yy // 5 + xx // 3 + np.arange(1 + channels)[:, None, None]) % 2) == 0, 255.0, 0.0)
        extreme = blocks[None].astype(np.float32)
        for name, arr in (("noise", noise), ("smooth", smooth), ("extremes", extreme)):
            out.append(ParityInput(f"{name}-{tag}", arr[:, :1].copy(), arr[:, 1:].copy()))
    return out


def real_inputs(channels: int, hw: tuple[int, int] | None, multiple: int) -> list[ParityInput]:
    """The first pair of each REAL_SETS folder under data_root(), resized to a static size if any."""
    from PIL import Image

    from lutfuse_deploy.io.images import find_pairs, load_pair
    from lutfuse_deploy.paths import data_root

    out = []
    for name in REAL_SETS:
        folder = data_root() / "ivif" / name
        if not (folder / "ir").is_dir():
            continue
        pairs, _ = find_pairs(folder / "ir", folder / "vi")
        if not pairs:
            continue
        ir, vi = load_pair(pairs[0], vi_mode="RGB" if channels == 3 else "L")
        if hw is not None:
            size = (hw[1], hw[0])
            ir = np.asarray(Image.fromarray(ir).resize(size, Image.Resampling.BILINEAR))
            vi = np.asarray(Image.fromarray(vi).resize(size, Image.Resampling.BILINEAR))
        else:
            h, w = _round_to(ir.shape[0], multiple), _round_to(ir.shape[1], multiple)
            ir, vi = ir[:h, :w], vi[:h, :w]
        vi_chw = vi.transpose(2, 0, 1) if vi.ndim == 3 else vi[None]
        out.append(ParityInput(f"{name}/{pairs[0].name}", ir[None, None].astype(np.float32),
                               vi_chw[None].astype(np.float32)))
    return out


RIG_SET = ("rig", "roadscene_raw")  # unregistered raw pairs: the real input of a rig graph


def rig_inputs(channels: int, rig: Any, seed: int = 0) -> list[ParityInput]:
    """Inputs of a rig graph: each synthetic kind at the two cameras' sizes, and the first raw pair of
    ``rig/roadscene_raw`` resized to them when the shared data is present."""
    from PIL import Image

    from lutfuse_deploy.io.images import find_pairs
    from lutfuse_deploy.paths import data_root

    (iw, ih), (vw, vh) = rig.ir_size, rig.vi_size
    ir_items = synthetic_inputs(0, (ih, iw), 1, seed)
    vi_items = synthetic_inputs(channels - 1, (vh, vw), 1, seed + 1)
    out = [ParityInput(f"{a.name.split('-')[0]}-ir{iw}x{ih}-vi{vw}x{vh}", a.ir, b.ir if channels == 1 else
                       np.concatenate([b.ir, b.vi], axis=1)) for a, b in zip(ir_items, vi_items)]
    folder = data_root().joinpath(*RIG_SET)
    if (folder / "ir").is_dir():
        pairs, _ = find_pairs(folder / "ir", folder / "vi")
        if pairs:
            ir = Image.open(pairs[0].ir).convert("L").resize((iw, ih), Image.Resampling.BILINEAR)
            vi = Image.open(pairs[0].vi).convert("RGB" if channels == 3 else "L").resize((vw, vh),
                                                                                        Image.Resampling.BILINEAR)
            vi_arr = np.asarray(vi, dtype=np.float32)
            vi_chw = vi_arr.transpose(2, 0, 1) if vi_arr.ndim == 3 else vi_arr[None]
            out.append(ParityInput(f"{'/'.join(RIG_SET)}/{pairs[0].name}",
                                   np.asarray(ir, dtype=np.float32)[None, None], vi_chw[None]))
    return out


def _torch_path(model: Any, item: ParityInput, dtype: Any) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(item.ir).to(dtype), torch.from_numpy(item.vi).to(dtype))
    return out.numpy()


@dataclass(frozen=True)
class Truth:
    """Float64 truth of one input and how far PyTorch float32 itself is from it."""

    value: np.ndarray  # float64
    e_off: float

    @property
    def bound(self) -> float:
        return max(FLOAT_ATOL, 2.0 * self.e_off)


def truth_of(model: Any, item: ParityInput, model64: Any = None) -> Truth:
    """``model64``: ``model`` cast to float64, when the caller judges many inputs (made here otherwise)."""
    import torch

    value = _torch_path(model64 if model64 is not None else copy.deepcopy(model).double(), item, torch.float64)
    return Truth(value, float(np.abs(_torch_path(model, item, torch.float32).astype(np.float64) - value).max()))


def judge(got: np.ndarray, truth: Truth, io: str = "float") -> dict[str, Any]:
    """One input under ``PARITY_RULE``: max abs, bound, worst 8-bit difference and the verdict."""
    want8 = to_uint8(truth.value).astype(np.int16)
    if got.shape != truth.value.shape:
        return {"max_abs": float("inf"), "bound": truth.bound, "max_lsb": None, "e_off": truth.e_off,
                "passed": False}
    if io == "uint8":
        lsb = int(np.abs(got.astype(np.int16) - want8).max(initial=0))
        return {"max_abs": None, "bound": None, "max_lsb": lsb, "e_off": truth.e_off, "passed": lsb <= UINT8_ATOL}
    max_abs = float(np.abs(got.astype(np.float64) - truth.value).max(initial=0.0))
    lsb = int(np.abs(to_uint8(got).astype(np.int16) - want8).max(initial=0))
    return {"max_abs": max_abs, "bound": truth.bound, "max_lsb": lsb, "e_off": truth.e_off,
            "passed": bool(max_abs <= truth.bound and lsb <= UINT8_ATOL)}


def _session(path: Path, threads: int, level: str) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None
    return ort.InferenceSession(str(path), session_options(threads, level), providers=["CPUExecutionProvider"])


def verify_parity(path: Path, model: Any, io: str, inputs: list[ParityInput], threads: int = 2,
                  level: str = DEFAULT_LEVEL) -> dict[str, Any]:
    """Run every input through ``path`` in ONNX Runtime and judge it against float64 truth
    (``PARITY_RULE``); raise ExportError naming each failing input."""
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise MissingDependency("polygraphy", "onnx") from None

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    model64 = copy.deepcopy(model).double()
    old = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # polygraphy logs every inference; we summarise
    logging.getLogger("polygraphy").setLevel(logging.CRITICAL)
    try:
        with OnnxrtRunner(_session(path, threads, level)) as runner:
            for item in inputs:
                feed = {"ir": item.ir, "vi": item.vi}
                if io == "uint8":
                    feed = {k: v.astype(np.uint8) for k, v in feed.items()}
                row: dict[str, Any] = {"input": item.name,
                                       "shape": list(item.ir.shape[:1]) + list(item.vi.shape[1:])}
                row.update(judge(runner.infer(feed)["fused"], truth_of(model, item, model64), io))
                rows.append(row)
                if not row["passed"]:
                    failures.append(_explain(row))
    finally:
        G_LOGGER.module_severity = old
    if failures:
        raise ExportError("parity check failed, nothing written: " + "; ".join(failures))
    finite = [r["max_abs"] for r in rows if r["max_abs"] is not None]
    return {"backend": "onnxruntime", "graph_optimization_level": level, "threads": threads,
            "truth": "PyTorch model in float64", "rule": PARITY_RULE if io == "float" else
            "8-bit output within 1 LSB of float64 truth's 8-bit image",
            "unit": "LSB (uint8)" if io == "uint8" else "[0,1] scale",
            "max_abs": max(finite, default=None),
            "worst_fraction_of_bound": max((r["max_abs"] / r["bound"] for r in rows if r["bound"]), default=None),
            "max_lsb": max((r["max_lsb"] for r in rows), default=0), "inputs": rows}


def _explain(row: dict[str, Any]) -> str:
    if row["max_abs"] is None:
        return f"{row['input']}: 8-bit output {row['max_lsb']} LSB from truth (> 1)"
    if row["max_abs"] == float("inf"):
        return f"{row['input']}: output shape differs from the model's"
    return (f"{row['input']}: max abs {row['max_abs']:.3g} vs bound {row['bound']:.3g} (PyTorch float32 is "
            f"{row['e_off']:.3g} from float64 on this input), 8-bit {row['max_lsb']} LSB")
