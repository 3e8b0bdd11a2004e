"""What each TensorRT major can do with each precision, in one place (the version quirks live here).

TensorRT 10 picks reduced precision from builder flags (``FP16``, ``INT8`` + an entropy
calibrator), and per-layer precision with ``OBEY_PRECISION_CONSTRAINTS`` keeps chosen layers in
FP32. TensorRT 11 removed all of that: every network is strongly typed, so FP16 must already be in
the ONNX (ModelOpt AutoCast) and INT8 must come as explicit Q/DQ nodes; ``--best`` is gone. A
request a version cannot honour is refused here, before anything is written.

The lookup (GridSample, whose grid coordinates lose ~0.06 texel in FP16, docs/semantics.md §4) and the
colour conversion around it stay in FP32 under reduced precision: ``fp32_guard`` finds them on any
graph given as ``GraphNode``s (ONNX nodes here and for trtexec/AutoCast; TensorRT layers at build).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lutfuse_deploy.engines.targets import PRECISIONS, Target
from lutfuse_deploy.errors import EngineError, InputError

ANCHOR_OPS = frozenset({"GridSample"})
# The guard walks up from the lookup through cheap elementwise/reduction ops (grid coordinates, luma,
# chroma) and stops at the heavy ops that gain from reduced precision.
STOP_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "MatMul",
        "Gemm",
        "InstanceNormalization",
        "BatchNormalization",
        "QuantizeLinear",
        "DequantizeLinear",
    }
)
AUTOCAST_COMMAND = "python -m modelopt.onnx.autocast"


def exact_name_patterns(names: Iterable[str]) -> list[str]:
    """AutoCast's ``nodes_to_exclude`` are regular expressions applied with ``re.match``: a bare node
    name such as ``/lookup/Add_1`` would also match ``/lookup/Add_10`` and treats ``.`` as any
    character, so each name is escaped and anchored at both ends."""
    return [f"^{re.escape(n)}$" for n in names]


@dataclass(frozen=True)
class GraphNode:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def fp32_guard(
    nodes: Iterable[GraphNode], anchor_ops: frozenset[str] = ANCHOR_OPS, stop_ops: frozenset[str] = STOP_OPS
) -> list[str]:
    """Names of the nodes to keep in FP32: each lookup, everything after it, and what feeds those
    through non-stop ops (grid coordinates, luma, chroma). Empty when the graph has no lookup."""
    nodes = list(nodes)
    producer = {out: n for n in nodes for out in n.outputs}
    consumers: dict[str, list[GraphNode]] = {}
    for n in nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    samplers = [n for n in nodes if n.op in anchor_ops]
    # A rig graph's warp samples the IR image itself: its grid (pixel coordinates) stays in FP32, but
    # what follows it is the model, not a lookup, and may run in reduced precision like any model.
    warps = [n for n in samplers if n.inputs and _reaches_image_input(n.inputs[0], producer)]
    anchors = [n for n in samplers if n not in warps]
    keep: dict[str, GraphNode] = {w.name: w for w in warps}
    for w in warps:
        grid = producer.get(w.inputs[1]) if len(w.inputs) > 1 else None
        if grid is not None and grid.op not in stop_ops:
            keep[grid.name] = grid
    todo = list(anchors)
    while todo:  # forward: everything downstream of a lookup
        n = todo.pop()
        if n.name in keep:
            continue
        keep[n.name] = n
        todo.extend(c for out in n.outputs for c in consumers.get(out, []))
    todo = list(keep.values())
    seen: set[str] = set()
    while todo:  # backward: what feeds the guarded nodes, up to the heavy ops
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        for t in n.inputs:
            p = producer.get(t)
            if p is not None and p.op not in stop_ops and p.name not in keep:
                keep[p.name] = p
                todo.append(p)
    order = {n.name: i for i, n in enumerate(nodes)}
    return sorted(keep, key=order.__getitem__)


IMAGE_INPUTS = frozenset({"ir", "vi"})
SHAPE_OPS = frozenset({"Shape", "SHAPE", "Size"})


def _reaches_image_input(tensor: str, producer: dict[str, GraphNode]) -> bool:
    """Whether ``tensor`` is computed from a graph's image input (``ir``/``vi``), not from constants
    alone (a lookup's table)."""
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        if t in IMAGE_INPUTS:
            return True
        if t in seen:
            continue
        seen.add(t)
        p = producer.get(t)
        if p is not None and p.op not in SHAPE_OPS:  # a shape (a table expanded to the batch) is no pixel
            todo.extend(p.inputs)
    return False


@dataclass(frozen=True)
class PrecisionPlan:
    """How a precision is realised on one TensorRT major (flags, typing, quantisation route)."""

    precision: str
    tensorrt_major: int
    builder_flags: tuple[str, ...]  # BuilderFlag names to set (TensorRT 10 only)
    no_tf32: bool  # clear BuilderFlag.TF32: fp32 parity (TF32 convs round to 10-bit mantissas)
    strongly_typed: bool
    calibrator: bool  # implicit INT8 with the entropy calibrator (TensorRT 10)
    qdq: bool  # explicit Q/DQ nodes (present in the ONNX, or inserted first)
    insert_qdq: bool  # we insert Q/DQ with ONNX Runtime before building
    autocast_fp16: bool  # convert to mixed FP16 with ModelOpt AutoCast before building (TensorRT 11)
    pin_fp32: bool  # keep the guard layers in FP32

    @property
    def flags(self) -> list[str]:
        """Everything that shapes the engine, for the manifest."""
        out = list(self.builder_flags)
        out += ["NO_TF32"] if self.no_tf32 else []
        out += ["STRONGLY_TYPED"] if self.strongly_typed else []
        out += ["INT8_CALIBRATOR"] if self.calibrator else []
        out += ["QDQ"] if self.qdq else []
        out += ["AUTOCAST_FP16"] if self.autocast_fp16 else []
        out += ["FP32_LOOKUP"] if self.pin_fp32 else []
        return out


def plan_precision(
    precision: str,
    tensorrt_major: int,
    target: Target,
    *,
    has_lookup: bool,
    onnx_has_qdq: bool,
    onnx_has_fp16: bool,
    have_calibration: bool,
    qdq: bool = False,
    dla_core: int | None = None,
    onnx_ops: frozenset[str] = frozenset(),
) -> PrecisionPlan:
    """The plan for ``precision`` on ``tensorrt_major``, or one clear refusal."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision not in target.precisions:
        raise EngineError(
            f"target {target.name} does not offer {precision} (it offers {', '.join(target.precisions)})"
        )
    if tensorrt_major not in (10, 11):
        raise EngineError(
            f"TensorRT {tensorrt_major} is not supported: lutfuse-deploy builds with TensorRT 10 or 11"
        )
    _check_dla(precision, target, dla_core, onnx_ops)
    wants_int8 = precision in ("int8", "best")
    reduced = precision != "fp32"
    if qdq and not wants_int8:
        raise InputError("--qdq only applies to --precision int8 (or best)")
    if tensorrt_major >= 11:
        if precision == "best":
            raise EngineError(
                "TensorRT 11 removed --best (all networks are strongly typed): choose fp16 or int8"
            )
        if wants_int8 and not (onnx_has_qdq or qdq):
            raise EngineError(
                "TensorRT 11 has no INT8 calibrator: add --qdq (with --calib) to insert Q/DQ nodes, "
                "or pass an ONNX that already has them"
            )
        if qdq and not onnx_has_qdq and not have_calibration:
            raise EngineError(
                "--qdq needs calibration data to set the Q/DQ scales: pass --calib (see calibration/)"
            )
        insert = wants_int8 and not onnx_has_qdq
        autocast = precision == "fp16" and not onnx_has_fp16
        return PrecisionPlan(
            precision,
            tensorrt_major,
            builder_flags=(),
            no_tf32=precision == "fp32",
            strongly_typed=True,
            calibrator=False,
            qdq=wants_int8,
            insert_qdq=insert,
            autocast_fp16=autocast,
            pin_fp32=has_lookup and (insert or autocast),  # excluded from AutoCast / quantisation
        )
    if precision == "fp16" and onnx_has_fp16:
        # already mixed precision (e.g. AutoCast): let the graph's types rule, as TensorRT 11 would
        return PrecisionPlan(
            precision,
            tensorrt_major,
            builder_flags=(),
            no_tf32=False,
            strongly_typed=True,
            calibrator=False,
            qdq=False,
            insert_qdq=False,
            autocast_fp16=False,
            pin_fp32=False,
        )
    flags: list[str] = []
    if precision in ("fp16", "best"):
        flags.append("FP16")
    if wants_int8:
        flags.append("INT8")
    use_qdq = wants_int8 and (onnx_has_qdq or qdq)
    if wants_int8 and not use_qdq and not have_calibration:
        raise EngineError(
            f"{precision} needs calibration data: pass --calib with a list from calibration/ "
            "(e.g. calibration/msrs.txt), a folder with ir/ and vi/, or a calib.npz"
        )
    if qdq and not onnx_has_qdq and not have_calibration:
        raise EngineError(
            "--qdq needs calibration data to set the Q/DQ scales: pass --calib (see calibration/)"
        )
    pin = reduced and has_lookup
    if pin:
        flags.append("OBEY_PRECISION_CONSTRAINTS")
    return PrecisionPlan(
        precision,
        tensorrt_major,
        builder_flags=tuple(flags),
        no_tf32=precision == "fp32",
        strongly_typed=False,
        calibrator=wants_int8 and not use_qdq,
        qdq=use_qdq,
        insert_qdq=use_qdq and not onnx_has_qdq,
        autocast_fp16=False,
        pin_fp32=pin,
    )


def _check_dla(precision: str, target: Target, dla_core: int | None, ops: frozenset[str]) -> None:
    if dla_core is None:
        return
    if target.dla_cores == 0:
        raise EngineError(f"target {target.name} has no DLA: drop --dla")
    if not 0 <= dla_core < target.dla_cores:
        raise EngineError(f"target {target.name} has DLA cores 0..{target.dla_cores - 1}, not {dla_core}")
    blocked = sorted(ops & set(target.dla_unsupported_ops))
    if blocked:
        raise EngineError(
            f"the DLA of {target.name} cannot run {', '.join(blocked)} (the LUT lookup): build for the GPU (drop --dla)"
        )
    if precision not in ("fp16", "int8"):
        raise EngineError(f"the DLA runs fp16 or int8 only, not {precision}")
