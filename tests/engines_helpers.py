"""Small exported-looking ONNX models for the engine tests (built with onnx.helper, no exporter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# A stand-in for trtexec: writes --saveEngine, prints the lines build.sh reads back, or fails on demand.
FAKE_TRTEXEC = """#!/usr/bin/env bash
echo "fake trtexec $*" >> "${FAKE_LOG:-/dev/null}"
[ "${FAKE_TRTEXEC_RC:-0}" = 0 ] || { echo "[E] Error[4]: fake failure"; exit "$FAKE_TRTEXEC_RC"; }
for a in "$@"; do case "$a" in
  --saveEngine=*) printf 'ENGINE %s' "$*" > "${a#--saveEngine=}";;
  --exportLayerInfo=*) echo '{"Layers": ["fake"]}' > "${a#--exportLayerInfo=}";;
esac; done
echo "[I] TensorRT version: 10.3.0"
echo "[I] Selected Device: Orin"
echo "[I] Compute Capability: 8.7"
echo "&&&& PASSED TensorRT.trtexec"
"""


def make_onnx(
    path: Path,
    *,
    kind: str = "lutfuse",
    opset: int = 17,
    io: str = "float",
    static_hw: tuple[int, int] | None = None,
    sidecar: bool = True,
) -> Path:
    """A graph with the exporter's contract: inputs ir/vi, output fused.

    ``lutfuse``: luma + a conv "context" build a grid for a GridSample lookup, then a colour step;
    ``mmdrfuse-*``: concat -> conv -> tanh (no lookup). Runs in ONNX Runtime.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = 3 if kind == "lutfuse" else 1
    h, w = static_hw if static_hw else ("H", "W")
    elem = TensorProto.UINT8 if io == "uint8" else TensorProto.FLOAT
    ir = helper.make_tensor_value_info("ir", elem, ["N", 1, h, w])
    vi = helper.make_tensor_value_info("vi", elem, ["N", c, h, w])
    fused = helper.make_tensor_value_info("fused", TensorProto.FLOAT, ["N", c, h, w])
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(255.0, np.float32), "k255"),
        numpy_helper.from_array(np.array(2.0, np.float32), "k2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "k1"),
        numpy_helper.from_array(np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1), "luma_w"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(rng.normal(size=(1, 1 + c, 3, 3)).astype(np.float32) * 0.1, "ctx_w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "ctx_b"),
    ]
    nodes = []
    if io == "uint8":
        nodes += [
            helper.make_node("Cast", ["ir"], ["ir_f"], name="/in/Cast_ir", to=TensorProto.FLOAT),
            helper.make_node("Cast", ["vi"], ["vi_f"], name="/in/Cast_vi", to=TensorProto.FLOAT),
        ]
        ir_n, vi_n = "ir_f", "vi_f"
    else:
        ir_n, vi_n = "ir", "vi"
    nodes += [
        helper.make_node("Div", [ir_n, "k255"], ["ir01"], name="/in/Div_ir"),
        helper.make_node("Div", [vi_n, "k255"], ["vi01"], name="/in/Div_vi"),
        helper.make_node("Concat", ["vi01", "ir01"], ["x"], name="/ctx/Concat", axis=1),
        helper.make_node("Conv", ["x", "ctx_w", "ctx_b"], ["ctx_c"], name="/ctx/Conv", pads=[1, 1, 1, 1]),
    ]
    if kind == "lutfuse":
        nodes += [
            helper.make_node("Sigmoid", ["ctx_c"], ["ctx"], name="/ctx/Sigmoid"),
            helper.make_node("Mul", ["vi01", "luma_w"], ["yw"], name="/color/Mul"),
            helper.make_node("ReduceSum", ["yw", "axis1"], ["y"], name="/color/ReduceSum", keepdims=1),
            helper.make_node("Mul", ["y", "k2"], ["y2"], name="/lut/Mul_y"),
            helper.make_node("Sub", ["y2", "k1"], ["gx"], name="/lut/Sub_y"),
            helper.make_node("Mul", ["ctx", "k2"], ["c2"], name="/lut/Mul_c"),
            helper.make_node("Sub", ["c2", "k1"], ["gy"], name="/lut/Sub_c"),
            helper.make_node("Concat", ["gx", "gy"], ["g"], name="/lut/Concat", axis=1),
            helper.make_node("Transpose", ["g"], ["grid"], name="/lut/Transpose", perm=[0, 2, 3, 1]),
            helper.make_node(
                "GridSample",
                ["ir01", "grid"],
                ["s"],
                name="/lut/GridSample",
                mode="bilinear",
                padding_mode="border",
                align_corners=1,
            ),
            helper.make_node("Sub", ["s", "y"], ["dy"], name="/color/Sub"),
            helper.make_node("Add", ["vi01", "dy"], ["fused"], name="/color/Add"),
        ]
    else:
        nodes += [helper.make_node("Tanh", ["ctx_c"], ["fused"], name="/out/Tanh")]
    graph = helper.make_graph(nodes, "test", [ir, vi], [fused], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if sidecar:
        meta = {
            "kind": kind,
            "io": io,
            "opset": opset,
            "lowering": "gridsample" if kind == "lutfuse" else None,
            "inputs": [{"name": "ir", "shape": ["N", 1, h, w]}, {"name": "vi", "shape": ["N", c, h, w]}],
            "outputs": [{"name": "fused", "shape": ["N", c, h, w]}],
            "dynamic": static_hw is None,
        }
        path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return path
