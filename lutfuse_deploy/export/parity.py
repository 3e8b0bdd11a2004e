"""Export verifies itself: the new graph in ONNX Runtime against the PyTorch eager path.

Polygraphy's ``OnnxrtRunner`` runs the graph and its ``SimpleCompareFunc`` compares each output
with the PyTorch one: max abs 1 LSB for uint8 io, 1e-4 on the [0, 1] scale (raw tanh for MMDRFuse)
for float io. That bound is flat for the default ``reference`` numerics, which reproduce PyTorch's
rounding (``export.graph``).

``widen=True`` is for the ``portable`` LUT-Fuse graph only: it sums in a different float32 order, and
the official context network is ill-conditioned (on TNO, MSRS night scenes and random noise PyTorch
float32 itself is 1e-4..5e-4 from a float64 run of the same model). When such an input misses 1e-4,
PyTorch is rerun in float64 and the bound becomes ``1e-4 + 2 * |torch32 - torch64|``; a wrong graph
misses by far more, and well-conditioned inputs keep 1e-4.
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


def _torch_path(model: Any, item: ParityInput, double: bool = False) -> np.ndarray:
    import torch

    m = copy.deepcopy(model).double() if double else model
    dtype = torch.float64 if double else torch.float32
    with torch.inference_mode():
        out = m(torch.from_numpy(item.ir).to(dtype), torch.from_numpy(item.vi).to(dtype))
    return out.float().numpy()


def _session(path: Path, threads: int, level: str) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None
    return ort.InferenceSession(str(path), session_options(threads, level), providers=["CPUExecutionProvider"])


def verify_parity(path: Path, model: Any, io: str, inputs: list[ParityInput], threads: int = 2,
                  level: str = DEFAULT_LEVEL, widen: bool = False) -> dict[str, Any]:
    """Run every input through ``path`` and the PyTorch model; raise ExportError on any mismatch."""
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner
        from polygraphy.comparator import IterationResult
        from polygraphy.comparator.compare import SimpleCompareFunc
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise MissingDependency("polygraphy", "onnx") from None

    atol = UINT8_ATOL if io == "uint8" else FLOAT_ATOL
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    old = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # polygraphy logs every comparison; we summarise
    logging.getLogger("polygraphy").setLevel(logging.CRITICAL)
    try:
        with OnnxrtRunner(_session(path, threads, level)) as runner:
            for item in inputs:
                feed = {"ir": item.ir, "vi": item.vi}
                if io == "uint8":
                    feed = {k: v.astype(np.uint8) for k, v in feed.items()}
                got = runner.infer(feed)["fused"]
                want = _torch_path(model, item)
                if io == "uint8":
                    got, want = got.astype(np.float32), to_uint8(want).astype(np.float32)
                row: dict[str, Any] = {"input": item.name,
                                       "shape": list(item.ir.shape[:1]) + list(item.vi.shape[1:])}
                bound = atol
                result = _compare(SimpleCompareFunc, IterationResult, got, want, bound)
                if widen and not result and io == "float" and got.shape == want.shape:
                    noise = float(np.abs(want - _torch_path(model, item, double=True)).max())
                    row["torch_float32_error"] = noise
                    bound = atol + 2 * noise
                    result = _compare(SimpleCompareFunc, IterationResult, got, want, bound)
                max_abs = float(result.max_absdiff) if got.shape == want.shape else float("inf")
                row.update(max_abs=max_abs, bound=bound, passed=bool(result))
                rows.append(row)
                if not row["passed"]:
                    failures.append(_explain(row, io))
    finally:
        G_LOGGER.module_severity = old
    if failures:
        raise ExportError("parity check failed, nothing written: " + "; ".join(failures))
    return {"backend": "onnxruntime", "graph_optimization_level": level, "threads": threads,
            "bound": atol, "unit": "LSB (uint8)" if io == "uint8" else "[0,1] scale",
            "rule": "max abs <= 1 LSB" if io == "uint8" else
            ("max abs <= 1e-4, or <= 1e-4 + 2*|torch32 - torch64| where PyTorch float32 is itself that far from exact"
             if widen else "max abs <= 1e-4"),
            "max_abs": max((r["max_abs"] for r in rows), default=0.0), "inputs": rows}


def _compare(compare_cls: Any, result_cls: Any, got: np.ndarray, want: np.ndarray, atol: float) -> Any:
    compare = compare_cls(check_shapes=True, rtol=0.0, atol=atol)
    return compare(result_cls({"fused": got}, runner_name="onnxruntime"),
                   result_cls({"fused": want}, runner_name="torch"))["fused"]


def _explain(row: dict[str, Any], io: str) -> str:
    unit = " LSB" if io == "uint8" else ""
    msg = f"{row['input']}: max abs {row['max_abs']:.3g}{unit} > {row['bound']:.3g}{unit}"
    if "torch_float32_error" in row:
        msg += f" (PyTorch float32 vs float64 on this input: {row['torch_float32_error']:.3g})"
    return msg
