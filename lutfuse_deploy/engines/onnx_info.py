"""What the engine builder needs to know about an exported .onnx, read once and checked early.

The exporter's contract: inputs ``ir`` (N x 1 x H x W) and ``vi`` (N x 3 | 1 x H x W), output
``fused``, float32 or uint8 io, and a sidecar ``FILE.json`` (kind, io, opset, lowering, ...). A
missing sidecar is tolerated (the kind is then read from the graph), a graph that breaks the
contract is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy import MODEL_KINDS
from lutfuse_deploy.engines.precision import GraphNode, fp32_guard
from lutfuse_deploy.engines.targets import ShapeProfile, size_text
from lutfuse_deploy.errors import EngineError, InputError, MissingDependency
from lutfuse_deploy.io.files import read_json_object, sha256_file

INPUTS = ("ir", "vi")
OUTPUT = "fused"
# TensorRT's parser knows GridSample's opset 16-19 mode strings only; at 20+ it reads nearest (§3).
GRIDSAMPLE_OPSETS = range(16, 20)
_FLOAT, _UINT8, _FLOAT16, _DOUBLE = 1, 2, 10, 11  # onnx.TensorProto element types


@dataclass(frozen=True)
class OnnxInfo:
    path: Path
    sha256: str
    kind: str
    kind_source: str  # "sidecar", "metadata" or "inferred" (from the vi channels)
    io: str  # "float" or "uint8"
    opset: int
    input_shapes: dict[str, tuple[int | str, ...]]
    vi_channels: int
    static_hw: tuple[int, int] | None  # (H, W) when the export fixed the image size
    ops: frozenset[str]
    has_qdq: bool
    has_fp16: bool
    has_fp64: bool  # a LUT-Fuse graph exported by an older version (float64 numerics, ONNX Runtime only)
    guard_nodes: tuple[str, ...]  # named nodes to keep in FP32 under reduced precision
    sidecar: dict[str, Any] | None
    sidecar_path: Path | None
    rig_hw: dict[str, tuple[int, int]] | None = None  # (H, W) of ir and vi in a rig graph (export --rig)

    @property
    def has_lookup(self) -> bool:
        return "GridSample" in self.ops

    @property
    def model_name(self) -> str:
        return self.path.stem

    def input_shape(self, name: str, hw: tuple[int, int], batch: int = 1) -> tuple[int, int, int, int]:
        """An input's dims at image size ``hw``; a rig graph's inputs keep the cameras' own sizes."""
        if self.rig_hw is not None:
            hw = self.rig_hw[name]
        return (batch, 1 if name == "ir" else self.vi_channels, hw[0], hw[1])


def find_sidecar(onnx_path: Path) -> Path | None:
    for cand in (onnx_path.with_suffix(".json"), onnx_path.with_name(onnx_path.name + ".json")):
        if cand.is_file():
            return cand
    return None


def _dims(value_info: Any) -> tuple[int | str, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def inspect_onnx(path: str | Path) -> OnnxInfo:
    """Read an exported model without its weights; refuse anything that is not one of ours."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such ONNX file: {path}")
    if path.is_dir() or path.suffix.lower() != ".onnx":
        raise InputError(f"{path} is not an .onnx file (export one with `lutfuse-deploy export`)")
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    if not graph.node and not graph.input:
        raise InputError(f"{path.name} is not an ONNX model (no graph)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise InputError(
            f"{path.name} keeps its weights in external files; re-export it as one self-contained .onnx"
        )
    inits = {i.name for i in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in inits}
    outputs = {o.name: o for o in graph.output}
    if set(inputs) != set(INPUTS) or OUTPUT not in outputs:
        raise EngineError(
            f"{path.name}: expected inputs ir, vi and output fused (as `lutfuse-deploy export` writes), "
            f"got inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    shapes = {n: _dims(v) for n, v in inputs.items()}
    for name, dims in shapes.items():
        if len(dims) != 4:
            raise EngineError(f"{path.name}: input {name} has rank {len(dims)}, expected N x C x H x W")
    vi_c = shapes["vi"][1]
    if vi_c not in (1, 3):
        raise EngineError(f"{path.name}: input vi must have 1 or 3 channels, got {vi_c}")
    elem = inputs["ir"].type.tensor_type.elem_type
    if elem not in (_FLOAT, _UINT8):
        raise EngineError(f"{path.name}: inputs must be float32 or uint8")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    sidecar_file = find_sidecar(path)
    sidecar = read_json_object(sidecar_file) if sidecar_file else None
    kind, source = _kind(sidecar, model, int(vi_c))
    hw = [shapes["vi"][2], shapes["vi"][3]]  # the image size: the visible frame's (a rig graph's IR differs)
    static = (int(hw[0]), int(hw[1])) if all(isinstance(d, int) and d > 0 for d in hw) else None
    rig_hw = _rig_sizes(shapes, sidecar, path.name)
    nodes = [GraphNode(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in graph.node]
    ops = frozenset(n.op_type for n in graph.node)
    return OnnxInfo(
        path=path,
        sha256=sha256_file(path),
        kind=kind,
        kind_source=source,
        io="uint8" if elem == _UINT8 else "float",
        opset=int(opset),
        input_shapes=shapes,
        vi_channels=int(vi_c),
        static_hw=static,
        ops=ops,
        has_qdq=bool(ops & {"QuantizeLinear", "DequantizeLinear"}),
        has_fp16=_has_fp16(model),
        has_fp64=_has_fp64(model),
        guard_nodes=tuple(_float_only(model, fp32_guard(nodes))),
        sidecar=sidecar,
        sidecar_path=sidecar_file,
        rig_hw=rig_hw,
    )


def _rig_sizes(shapes: dict[str, tuple[int | str, ...]], sidecar: dict[str, Any] | None,
               name: str) -> dict[str, tuple[int, int]] | None:
    """Per-input (H, W) of a rig graph (static inputs of two sizes); None for one-size graphs."""
    sizes = {n: tuple(shapes[n][2:]) for n in INPUTS}
    if sizes["ir"] == sizes["vi"] and not (sidecar and "rig" in sidecar):
        return None
    if not all(isinstance(d, int) and d > 0 for hw in sizes.values() for d in hw):
        raise EngineError(f"{name}: inputs ir and vi differ in size but are not static (a rig graph has the "
                          "rig's sizes: re-export with `lutfuse-deploy export --rig`)")
    return {n: (int(hw[0]), int(hw[1])) for n, hw in sizes.items()}


def _kind(sidecar: dict[str, Any] | None, model: Any, vi_c: int) -> tuple[str, str]:
    if sidecar and sidecar.get("kind") in MODEL_KINDS:
        return str(sidecar["kind"]), "sidecar"
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("kind") in MODEL_KINDS:
        return meta["kind"], "metadata"
    # Runners only need the channel count; student vs teacher cannot be told apart here.
    return ("lutfuse" if vi_c == 3 else "mmdrfuse-student"), "inferred"


def _has_fp16(model: Any) -> bool:
    g = model.graph
    if any(t.data_type == _FLOAT16 for t in g.initializer):
        return True
    for n in g.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in n.attribute):
            return True
    return any(v.type.tensor_type.elem_type == _FLOAT16 for v in list(g.value_info) + list(g.output))


def _has_fp64(model: Any) -> bool:
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == _DOUBLE for a in n.attribute)
               for n in model.graph.node) or any(t.data_type == _DOUBLE for t in model.graph.initializer)


def _float_only(model: Any, names: list[str]) -> list[str]:
    """Drop unnamed nodes and nodes with non-float outputs (shape arithmetic cannot be FP32-pinned)."""
    if not names:
        return []
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):  # best effort: then only the lookup is kept
        inferred = None
    types: dict[str, int] = {}
    if inferred is not None:
        g = inferred.graph
        for v in list(g.value_info) + list(g.output) + list(g.input):
            types[v.name] = v.type.tensor_type.elem_type
    by_name = {n.name: n for n in model.graph.node}
    keep = []
    for name in names:
        node = by_name.get(name)
        if not name or node is None or node.op_type == "Cast":  # a Cast's type is its own
            continue
        if node.op_type == "GridSample" or all(types.get(o) == _FLOAT for o in node.output):
            keep.append(name)
    return keep


def check_for_tensorrt(info: OnnxInfo) -> None:
    """Refuse graphs TensorRT cannot take (float64) or would build silently wrong (GridSample at 20+)."""
    if info.has_fp64:
        raise EngineError(
            f"{info.path.name} computes in float64 (an ONNX Runtime-only graph from an older version); "
            "TensorRT has no float64: re-export it with `lutfuse-deploy export`, whose graphs are float32"
        )
    if info.has_lookup and info.opset not in GRIDSAMPLE_OPSETS:
        raise EngineError(
            f"{info.path.name} has GridSample at opset {info.opset}: TensorRT's ONNX parser only reads its "
            "opset 16-19 modes (at 20+ it falls back to nearest); re-export with --opset 17"
        )


def check_shapes(info: OnnxInfo, shapes: ShapeProfile) -> None:
    """A static export accepts its own size only; MMDRFuse's teacher needs even sizes."""
    if info.static_hw is not None and not (shapes.is_static and shapes.opt == info.static_hw):
        size = size_text(info.static_hw)
        raise InputError(
            f"{info.path.name} was exported for {size} (WxH) only: pass --shapes {size} or re-export with --dynamic"
        )
    if info.kind == "mmdrfuse-teacher":
        for hw in (shapes.min, shapes.opt, shapes.max):
            if hw[0] % 2 or hw[1] % 2:
                raise InputError(f"mmdrfuse-teacher needs even width and height; --shapes has {size_text(hw)}")


def _shaped_graph(path: Path, hw: tuple[int, int]) -> Any | None:
    """The graph with batch 1 and size ``hw`` (H, W) on its image inputs, shapes inferred; None when
    ONNX shape inference cannot follow it."""
    import onnx

    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and not all(d.HasField("dim_value") for d in dims[2:]):  # a rig's stay as exported
            dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, hw[0], hw[1]
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except (onnx.shape_inference.InferenceError, ValueError):
        return None


def _static_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for v in list(graph.value_info) + list(graph.input) + list(graph.output):
        t = v.type.tensor_type
        if t.elem_type and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[v.name] = tuple(d.dim_value for d in t.shape.dim)
    return shapes


def largest_layer_bytes(info: OnnxInfo, hw: tuple[int, int]) -> int:
    """Bytes of the inputs and outputs of the graph's largest node at batch 1 and size ``hw`` (H, W),
    from ONNX shape inference: what any engine must hold at once for that node, before workspace.

    Hand-written because TensorRT only reports memory after a build (on the device); this number
    lets a build refuse a profile the target cannot hold, before anything is written.
    """
    import onnx

    graph = _shaped_graph(info.path, hw)
    if graph is None:
        return 0  # unknown: nothing to refuse on
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    sizes = {
        name: int(np.prod(shape)) * onnx.helper.tensor_dtype_to_np_dtype(types[name]).itemsize
        for name, shape in _static_shapes(graph).items()
    }
    inits = {i.name for i in graph.initializer}
    return max(
        (sum(sizes.get(t, 0) for t in (*n.input, *n.output) if t and t not in inits) for n in graph.node),
        default=0,
    )


def node_macs(path: Path, hw: tuple[int, int], names: Iterable[str]) -> dict[str, int]:
    """Multiply-accumulates of each named Conv/ConvTranspose/MatMul/Gemm node at batch 1 and size
    ``hw``: the speed weight of a layer that stays in float instead of INT8 (0 where shapes are unknown).

    Hand-written for the same reason as ``largest_layer_bytes``: no TensorRT here to ask."""
    wanted = set(names)
    graph = _shaped_graph(path, hw)
    if graph is None:
        return dict.fromkeys(wanted, 0)
    shapes = _static_shapes(graph)
    shapes.update({i.name: tuple(i.dims) for i in graph.initializer})
    out: dict[str, int] = {}
    for n in graph.node:
        if n.name not in wanted:
            continue
        w, y = shapes.get(n.input[1]) if len(n.input) > 1 else None, shapes.get(n.output[0])
        if w is None or y is None:
            out[n.name] = 0
        elif n.op_type == "Conv":
            out[n.name] = int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            x = shapes.get(n.input[0])
            out[n.name] = int(np.prod(x)) * int(np.prod(w[1:])) if x else 0
        else:  # MatMul / Gemm: output elements x the shared dimension (Gemm's transB flips the weight)
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            out[n.name] = int(np.prod(y)) * int(w[-1] if trans_b else w[-2] if len(w) > 1 else w[0])
    return out
