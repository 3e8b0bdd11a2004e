"""INT8 calibration data, the TensorRT 10 entropy calibrator and the TensorRT 11 Q/DQ route.

Calibration data comes from ``calibration/*.txt`` (one ``IR VI`` pair per line, paths relative to
``data_root()``), from a folder with ``ir/`` and ``vi/``, or from the ``calib.npz`` a build bundle
carries (uint8 batches already at the profile's OPT size, so the device needs no dataset). Images
are resized to OPT, the shape TensorRT calibrates at.

* TensorRT 10: ``make_entropy_calibrator`` feeds the batches through torch CUDA tensors; its cache
  file is named by ONNX sha256 + data digest + TensorRT version, so a changed model, data set or
  TensorRT never reuses stale scales.
* TensorRT 11 has no calibrator: ``insert_qdq`` writes explicit Q/DQ nodes with ONNX Runtime's
  static quantiser (symmetric INT8 activations and weights, float biases, entropy calibration, on
  the CPU), keeping the lookup in FP32.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, MissingDependency
from lutfuse_deploy.io.files import atomic_path, write_bytes_atomic
from lutfuse_deploy.paths import REPO_ROOT, data_root

CALIB_MAX_IMAGES = 32
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class CalibrationSet:
    """uint8 batches: ``ir`` N x 1 x H x W and ``vi`` N x C x H x W, all at one size, or, for a rig graph
    (``export --rig``), each camera at its own size."""

    ir: np.ndarray
    vi: np.ndarray
    source: str
    rig: Any = None  # a rig graph's ``rig.file.Rig``: the INT8 check scores against IR warped into its frame

    def __len__(self) -> int:
        return int(self.ir.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        """The image size the graph's layers run at: the visible camera's (a rig graph warps IR onto it)."""
        return int(self.vi.shape[2]), int(self.vi.shape[3])

    @cached_property
    def metric_sources(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(IR, visible gray) of each pair as the fused output's frame holds them, what the fusion metrics
        score against: a rig graph's IR warped through the rig (float64, rounded) and its visible cropped to
        the output box. Computed once: every INT8 trial of a build is scored against the same pairs."""
        from lutfuse_deploy.metrics.fusion import to_gray

        out = []
        for i in range(len(self)):
            ir, vi = self.ir[i, 0], self.vi[i].transpose(1, 2, 0)
            if self.rig is not None:
                from lutfuse_deploy.rig.overlay import crop_visible, warp_to_visible

                ir = np.clip(np.rint(warp_to_visible(ir, self.rig)), 0, 255).astype(np.uint8)
                vi = crop_visible(vi, self.rig)
            out.append((ir, to_gray(vi) if vi.shape[2] == 3 else vi[..., 0]))
        return out

    @property
    def digest(self) -> str:
        """Content hash: a list, a folder and the bundle's npz of the same pixels share it."""
        h = hashlib.sha256()
        for arr in (self.ir, self.vi):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def feed(self, index: int, io: str) -> dict[str, np.ndarray]:
        """One N=1 batch in the engine's input dtype (float32 on 0..255, or uint8)."""
        sl = slice(index, index + 1)
        if io == "uint8":
            return {"ir": np.ascontiguousarray(self.ir[sl]), "vi": np.ascontiguousarray(self.vi[sl])}
        return {"ir": self.ir[sl].astype(np.float32), "vi": self.vi[sl].astype(np.float32)}


def calibration_dir() -> Path:
    return REPO_ROOT / "calibration"


def read_list(path: Path) -> list[tuple[Path, Path]]:
    """``IR VI`` per line, relative to ``data_root()``; ``#`` starts a comment."""
    root = data_root()
    pairs = []
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path.name}:{no}: expected 'IR_PATH VI_PATH' relative to the data root")
        ir, vi = root / parts[0], root / parts[1]
        for p in (ir, vi):
            if not p.is_file():
                raise InputError(f"{path.name}:{no}: {p} not found (data root {root}; set LUTFUSE_DATA)")
        pairs.append((ir, vi))
    if not pairs:
        raise InputError(f"{path.name}: lists no image pairs")
    return pairs


def _resolve(spec: str) -> Path:
    p = Path(spec).expanduser()
    if p.exists():
        return p
    named = calibration_dir() / f"{spec}.txt"
    if named.is_file():
        return named
    known = ", ".join(sorted(q.stem for q in calibration_dir().glob("*.txt")))
    raise InputError(
        f"calibration data {spec!r} not found: pass a list file, a folder with ir/ and vi/, "
        f"a calib.npz, or one of: {known}"
    )


def load_calibration(
    spec: str | Path,
    *,
    vi_channels: int,
    hw: tuple[int, int],
    limit: int = CALIB_MAX_IMAGES,
    ir16: str = "refuse",
    ir_hw: tuple[int, int] | None = None,
) -> CalibrationSet:
    """Read and resize up to ``limit`` pairs (or a bundle's npz) into one ``CalibrationSet``.

    ``ir16`` maps 16-bit IR images to 8 bits (``io.images.IR16_MODES``) as ``fuse --ir16`` will at run
    time: calibrating on another mapping than the one deployed gives the wrong INT8 ranges.
    ``ir_hw``: a rig graph's IR size (``hw`` is then the visible camera's). Its pairs are the cameras'
    raw, unregistered frames, which may differ in size: the graph's own warp registers them.
    """
    path = _resolve(str(spec))
    if path.suffix == ".npz":
        if ir16 != "refuse":
            raise InputError(f"--ir16 {ir16}: {path.name} holds 8-bit pairs already (mapped when it was written)")
        return _load_npz(path, vi_channels, hw, ir_hw or hw)
    if path.is_dir():
        from lutfuse_deploy.io.images import find_pairs

        if not ((path / "ir").is_dir() and (path / "vi").is_dir()):
            raise InputError(f"{path}: a calibration folder needs ir/ and vi/ subfolders")
        found, _problems = find_pairs(path / "ir", path / "vi")
        pairs = [(p.ir, p.vi) for p in found]
        if not pairs:
            raise InputError(f"{path}: no IR/VI pairs found")
    elif path.is_file():
        pairs = read_list(path)
    else:
        raise InputError(f"{path}: not a calibration list, folder or npz")
    return _decode(pairs[:limit], vi_channels, hw, str(path), ir16, ir_hw)


def _decode(
    pairs: Sequence[tuple[Path, Path]],
    vi_channels: int,
    hw: tuple[int, int],
    source: str,
    ir16: str = "refuse",
    ir_hw: tuple[int, int] | None = None,
) -> CalibrationSet:
    from PIL import Image

    from lutfuse_deploy.io.images import ImagePair, load_pair, read_pair

    h, w = hw
    ih, iw = ir_hw or hw
    mode = "RGB" if vi_channels == 3 else "L"
    irs, vis = [], []
    for ir_path, vi_path in pairs:
        pair = ImagePair(ir_path.stem, ir_path, vi_path)
        if ir_hw is None:
            ir, vi = load_pair(pair, vi_mode=mode, ir16=ir16)
        else:  # a rig's two cameras: sizes may differ (the graph registers them)
            images = read_pair(pair, vi_mode=mode, ir16=ir16)
            ir, vi = images.ir, images.vi
        ir_img = Image.fromarray(ir).resize((iw, ih), Image.Resampling.BILINEAR)
        vi_img = Image.fromarray(vi).resize((w, h), Image.Resampling.BILINEAR)
        irs.append(np.asarray(ir_img, dtype=np.uint8)[None])
        v = np.asarray(vi_img, dtype=np.uint8)
        vis.append(v.transpose(2, 0, 1) if v.ndim == 3 else v[None])
    return CalibrationSet(np.stack(irs), np.stack(vis), source)


def _load_npz(path: Path, vi_channels: int, hw: tuple[int, int], ir_hw: tuple[int, int]) -> CalibrationSet:
    try:
        with np.load(path) as z:
            ir, vi = z["ir"], z["vi"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path.name}: not a calibration npz with arrays ir and vi ({exc})") from None
    if ir.dtype != np.uint8 or vi.dtype != np.uint8 or ir.ndim != 4 or vi.ndim != 4:
        raise InputError(f"{path.name}: ir and vi must be uint8 N x C x H x W")
    if ir.shape[1] != 1 or vi.shape[1] != vi_channels or len(ir) != len(vi):
        raise InputError(f"{path.name}: expected ir N x 1 x H x W and vi N x {vi_channels} x H x W")
    for name, arr, want in (("ir", ir, ir_hw), ("vi", vi, hw)):  # sizes said as WIDTHxHEIGHT
        if tuple(arr.shape[2:]) != tuple(want):
            raise InputError(f"{path.name} holds {name} images of {arr.shape[3]}x{arr.shape[2]}; this build "
                             f"needs {want[1]}x{want[0]} (the profile's OPT, or the rig's camera size)")
    return CalibrationSet(ir, vi, str(path))


def save_npz(data: CalibrationSet, path: Path) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, ir=data.ir, vi=data.vi)


def cache_name(onnx_sha256: str, data_digest: str, tensorrt_version: str) -> str:
    return f"calib-{onnx_sha256[:16]}-{data_digest[:12]}-trt{tensorrt_version}.cache"


def find_cache(folder: Path, onnx_sha256: str, data_digest: str, tensorrt_major: int) -> Path | None:
    """The newest cache for this model and data under the expected TensorRT major (bundles)."""
    pattern = f"calib-{onnx_sha256[:16]}-{data_digest[:12]}-trt{tensorrt_major}.*.cache"
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return found[-1] if found else None


def make_entropy_calibrator(data: CalibrationSet, io: str, cache_file: Path, device: int = 0) -> Any:
    """A TensorRT 10 ``IInt8EntropyCalibrator2`` over ``data``; buffers are torch CUDA tensors."""
    import tensorrt as trt
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.buffers: dict[str, torch.Tensor] = {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:
            if self.index >= len(data):
                return []  # documented end of data
            feed = data.feed(self.index, io)
            self.index += 1
            self.buffers = {n: torch.from_numpy(feed[n]).to(f"cuda:{device}") for n in names}
            torch.cuda.synchronize(device)
            return [int(self.buffers[n].data_ptr()) for n in names]

        def read_calibration_cache(self) -> bytes | None:  # None: no cache yet (documented)
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_atomic(cache_file, bytes(cache))

    return EntropyCalibrator()


def insert_qdq(
    onnx_in: Path,
    onnx_out: Path,
    data: CalibrationSet,
    io: str,
    keep_fp32: Sequence[str],
    ranges: Path | None = None,
) -> Path:
    """Write ``onnx_out``: ``onnx_in`` with symmetric INT8 Q/DQ on its convolutions (TensorRT's explicit
    quantisation), scales from entropy calibration on ``data``; ``keep_fp32`` nodes stay unquantised.

    ``ranges``: ONNX Runtime's calibration cache file (written on the first call, read on the next),
    so the sensitive-layer search calibrates once however many exclusion sets it tries; ONNX Runtime
    releases without ``calibration_cache_path`` calibrate every time (same ranges, slower). ONNX
    Runtime's own prints and warnings are silenced: the build reports what it measured instead."""
    import inspect

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(data):
                return None
            self.index += 1
            return data.feed(self.index - 1, io)

    cache: dict[str, Any] = {}
    if ranges is not None and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        cache["calibration_cache_path"] = str(ranges)
    with atomic_path(onnx_out) as tmp, _quiet():
        quantize_static(
            str(onnx_in),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(keep_fp32),
            calibrate_method=CalibrationMethod.Entropy,
            # biases stay float: quantised they become INT32 DequantizeLinear inputs, which TensorRT's
            # ONNX parser rejects; TensorRT fuses a float bias into the INT8 convolution itself
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            **cache,
        )
        if keep_fp32:
            _float_inputs_for(tmp, set(keep_fp32))
    return onnx_out


def _float_inputs_for(path: Path, keep: set[str]) -> None:
    """Give the nodes kept in float their float inputs back.

    ONNX Runtime's quantiser puts one Q/DQ pair on a tensor that any quantised node reads, and every
    reader gets the dequantised copy, the excluded ones too: a convolution left out beside a quantised
    sibling (LUT-Fuse's two input convolutions share ``vi``) still saw INT8 input. Each excluded node
    is rewired to the tensor its QuantizeLinear read; pairs no node reads any more are dropped. A graph
    edit on the quantiser's output, not a quantiser: the scales and the quantised nodes are untouched."""
    import onnx

    model = onnx.load(str(path))
    nodes = model.graph.node
    producer = {o: n for n in nodes for o in n.output}
    inits = {i.name for i in model.graph.initializer}

    def float_source(tensor: str) -> str | None:
        dq = producer.get(tensor)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            return None  # not an activation's Q/DQ (weights are initializers, already float for these)
        return str(q.input[0])

    for n in nodes:
        if n.name in keep:
            for i, t in enumerate(n.input):
                src = float_source(t)
                if src is not None:
                    n.input[i] = src
    while True:  # drop Q/DQ nodes nothing reads any more
        read = {t for n in nodes for t in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read]
        if not dead:
            break
        for n in dead:
            nodes.remove(n)
    read = {t for n in nodes for t in n.input}
    unread = [i for i in model.graph.initializer if i.name not in read]
    for i in unread:  # scales and zero points of the dropped pairs
        model.graph.initializer.remove(i)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantiser prints calibration progress to stdout and logs pre-processing advice on
    the root logger at WARNING: neither is the user's business during a build."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(StringIO()):
            yield
    finally:
        logging.disable(previous)


def write_list(pairs: Sequence[tuple[Path, Path]], out: Path, header: str = "") -> None:
    """Write a calibration list with paths relative to ``data_root()`` (never copies of images)."""
    root = data_root()
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{ir.resolve().relative_to(root)} {vi.resolve().relative_to(root)}" for ir, vi in pairs]
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
