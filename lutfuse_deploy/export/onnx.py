"""``torch_to_onnx``: a checkpoint to one ONNX graph from the two images to the fused image.

A plain conversion (paths and options in, a path out, no hidden state). The graph is written under a
temporary name, simplified, checked (ONNX checker, TensorRT-relevant structure) and verified in ONNX
Runtime against float64 truth (``export.parity``); only then are ``FILE.onnx`` and its sidecar ``FILE.json``
put in place. Any failure leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Any

from lutfuse_deploy import __version__
from lutfuse_deploy.errors import ExportError, MissingDependency
from lutfuse_deploy.export import lowering as lowerings
from lutfuse_deploy.export.graph import graph_module, size_multiple
from lutfuse_deploy.runtime.base import baked_tanh_map

FORMAT = "lutfuse-deploy/onnx-v1"
DEFAULT_OPSET = 17
MIN_OPSET = lowerings.GRIDSAMPLE_MIN_OPSET
IOS = ("float", "uint8")
INPUTS = ("ir", "vi")
OUTPUT = "fused"
TRACE_SIZE = (64, 96)  # tracing size of dynamic exports (any size works; small is fast)


def _max_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except ImportError:  # private constant; 20 is the TorchScript exporter's limit since torch 2.5
        return 20
    return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def validate_options(kind: str, opset: int, lowering_name: str, io: str, height: int | None, width: int | None,
                     dynamic: bool, multiple: int, allow_opset_override: bool) -> tuple[int, int] | None:
    """Refuse options the graph cannot honour; returns the static (H, W) or None for --dynamic."""
    if io not in IOS:
        raise ExportError(f"unknown io {io!r}: choose one of {', '.join(IOS)}")
    if lowering_name not in lowerings.LOWERINGS:
        raise ExportError(f"unknown lowering {lowering_name!r}: choose one of {', '.join(lowerings.LOWERINGS)}")
    top = _max_opset()
    if not MIN_OPSET <= opset <= top:
        raise ExportError(f"opset {opset} is not supported: use {MIN_OPSET}..{top} (default {DEFAULT_OPSET})")
    if kind == "lutfuse" and lowering_name == "gridsample":
        problem = lowerings.gridsample_opset_problem(opset)
        if problem and not allow_opset_override:
            raise ExportError(f"refusing opset {opset} for a GridSample graph: {problem}. Use --opset 17, "
                              "--lowering gather, or --allow-opset-20 if the graph is not meant for TensorRT")
    if (height is None) != (width is None):
        raise ExportError("give both --height and --width, or --dynamic")
    if height is not None and dynamic:
        raise ExportError("--dynamic and --height/--width exclude each other")
    if height is None:
        return None
    assert width is not None
    if min(height, width) < 3:
        raise ExportError(f"image size {width}x{height} is smaller than 3x3")
    if height % multiple or width % multiple:
        raise ExportError(f"a {kind} graph needs H and W that are multiples of {multiple}, got {width}x{height}")
    return height, width


def rig_sizes(rig: Any) -> dict[str, tuple[int, int]]:
    """(H, W) of each input and of the output of a rig graph: the cameras' native sizes in, the rig's
    output box out."""
    (iw, ih), (vw, vh), (ow, oh) = rig.ir_size, rig.vi_size, rig.out_size
    return {"ir": (ih, iw), "vi": (vh, vw), OUTPUT: (oh, ow)}


def _io_spec(kind: str, io: str, hw: tuple[int, int] | None, rig: Any = None) -> dict[str, dict[str, Any]]:
    """Names, symbolic or fixed shapes and dtypes, as written in the sidecar."""
    sizes: dict[str, Any] = rig_sizes(rig) if rig is not None else dict.fromkeys(
        ("ir", "vi", OUTPUT), hw if hw else ("height", "width"))
    c = 3 if kind == "lutfuse" else 1
    dtype = "uint8" if io == "uint8" else "float32"
    return {
        "inputs": {"ir": {"shape": ["batch", 1, *sizes["ir"]], "dtype": dtype},
                   "vi": {"shape": ["batch", c, *sizes["vi"]], "dtype": dtype}},
        "outputs": {OUTPUT: {"shape": ["batch", c if kind == "lutfuse" else 1, *sizes[OUTPUT]], "dtype": dtype}},
    }


def trace_graph(module: Any, path: Path, kind: str, io: str, opset: int, hw: tuple[int, int] | None,
                multiple: int, rig: Any = None) -> None:
    """Trace ``module`` to ``path`` with the package's input/output names and dynamic axes (a rig
    graph has the rig's static sizes, a dynamic batch)."""
    import torch

    h, w = hw or (TRACE_SIZE[0] - TRACE_SIZE[0] % multiple, TRACE_SIZE[1] - TRACE_SIZE[1] % multiple)
    sizes = rig_sizes(rig) if rig is not None else {"ir": (h, w), "vi": (h, w)}
    c = 3 if kind == "lutfuse" else 1
    dtype = torch.uint8 if io == "uint8" else torch.float32
    args = (torch.zeros(1, 1, *sizes["ir"], dtype=dtype), torch.zeros(1, c, *sizes["vi"], dtype=dtype))
    dims = {0: "batch", 2: "height", 3: "width"} if hw is None and rig is None else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about its own deprecation
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=list(INPUTS),
                          output_names=[OUTPUT], dynamic_axes={n: dims for n in (*INPUTS, OUTPUT)},
                          do_constant_folding=True)


OUTSIDE_POLICY = "IR reads as 0 where the thermal camera does not see (GridSample padding_mode=zeros)"


def _load_export_rig(path: str | Path, height: int | None, width: int | None, dynamic: bool, multiple: int,
                     kind: str) -> Any:
    """The rig of a rig graph, refused with the options it excludes or sizes the model cannot take."""
    from lutfuse_deploy.rig.file import load_rig

    if height is not None or width is not None or dynamic:
        raise ExportError("--rig fixes the graph's sizes (the cameras' and the rig's output): drop "
                          "--height/--width/--dynamic")
    rig = load_rig(path)
    w, h = rig.out_size
    if h % multiple or w % multiple:
        raise ExportError(f"a {kind} graph needs an output size that is a multiple of {multiple}, the rig's "
                          f"output is {w}x{h}")
    return rig


def _reference(model: Any, rig: Any) -> Any:
    """What the graph must equal: the model, behind the rig's warp when there is one."""
    if rig is None:
        return model
    from lutfuse_deploy.export.graph import RigGraph

    return RigGraph(model, rig).eval()


def _simplify(model: Any) -> Any:
    """onnxslim: constant folding and shape-arithmetic cleanup; parity is re-verified afterwards."""
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnxslim.slim(model)


def _stamp(model: Any, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "lutfuse-deploy", __version__


def torch_to_onnx(
    checkpoint: str | Path,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    lowering: str = lowerings.DEFAULT_LOWERING,
    io: str = "float",
    height: int | None = None,
    width: int | None = None,
    dynamic: bool = False,
    simplify: bool = True,
    allow_opset_override: bool = False,
    threads: int = 2,
    rig: str | Path | None = None,
) -> Path:
    """Export ``checkpoint`` to ``out`` (.onnx) and its sidecar ``out.with_suffix('.json')``.

    Without ``height``/``width`` the graph takes any size (as with ``dynamic=True``). ``lowering`` only
    applies to LUT-Fuse; every graph is float32 only, so ONNX Runtime, OpenVINO and TensorRT all take
    it. ``threads`` is what the parity check runs ONNX Runtime with. ``rig`` (a rig file) makes a graph
    that takes the two cameras' raw frames, each at its native size, and warps the IR inside the graph;
    its sizes are the rig's, so it excludes ``height``/``width``/``dynamic``.
    """
    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    from lutfuse_deploy.export.checks import structural_problems
    from lutfuse_deploy.export.parity import real_inputs, rig_inputs, synthetic_inputs, verify_parity
    from lutfuse_deploy.io.checkpoints import load_model, resolve_checkpoint
    from lutfuse_deploy.io.files import atomic_path, sha256_file, write_json_atomic

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output must end in .onnx")
    source = resolve_checkpoint(checkpoint)
    model, meta = load_model(source)
    kind = meta["kind"]
    multiple = size_multiple(model)
    lowering_name = lowering if kind == "lutfuse" else "none"
    hw = validate_options(kind, opset, lowering, io, height, width, dynamic, multiple, allow_opset_override)
    channels = 3 if kind == "lutfuse" else 1
    the_rig = None
    if rig is not None:
        the_rig = _load_export_rig(rig, height, width, dynamic, multiple, kind)
        inputs = rig_inputs(channels, the_rig)
    else:
        inputs = synthetic_inputs(channels, hw, multiple) + real_inputs(channels, hw, multiple)
    props = {"kind": kind, "io": io, "lowering": lowering_name, "opset": str(opset),
             "config": json.dumps(meta.get("config") or {}), "dynamic": str(hw is None).lower(),
             "size_multiple": str(multiple), "source_sha256": sha256_file(source),
             "weights_sha256": str(meta.get("weights_sha256", "")), "format": FORMAT}
    if the_rig is not None:
        props["rig"] = json.dumps(the_rig.to_dict())
        props["dynamic"] = "false"
    tanh_map = baked_tanh_map(kind, io, {})  # uint8 MMDRFuse: the 8-bit mapping is part of the graph
    if tanh_map:
        props["tanh_to_8bit"] = tanh_map
    sidecar_path = out.with_suffix(".json")
    with atomic_path(out) as tmp:
        trace_graph(graph_module(model, lowering_name, io, the_rig), tmp, kind, io, opset, hw, multiple, the_rig)
        traced = onnx.load(str(tmp))
        candidates = [(_simplify(traced), True)] if simplify else []
        candidates.append((traced, False))
        parity: dict[str, Any] | None = None
        notes: list[str] = []
        for graph, simplified in candidates:
            _stamp(graph, props)
            problems = structural_problems(graph, "tensorrt", allow_opset_override=allow_opset_override)
            if problems:
                raise ExportError(f"exported graph fails its checks: {'; '.join(problems)}")
            onnx.save(graph, str(tmp))
            try:
                parity = verify_parity(tmp, _reference(model, the_rig), io, inputs, threads=threads)
            except ExportError as exc:
                if not simplified:
                    raise
                notes.append(f"onnxslim output failed parity, kept the unsimplified graph ({exc})")
                continue
            break
        assert parity is not None
        sidecar = {
            "format": FORMAT, "kind": kind, "config": meta.get("config") or {},
            "source": {"path": str(source), "sha256": props["source_sha256"],
                       "weights_sha256": props["weights_sha256"]},
            "opset": opset, "lowering": lowering_name,
            "io": io, "tanh_to_8bit": tanh_map, "dynamic": hw is None and the_rig is None,
            "size_multiple": multiple, **_io_spec(kind, io, hw, the_rig), "simplified": simplified,
            **({"rig": {**the_rig.to_dict(), "path": str(rig), "out_size": list(the_rig.out_size),
                        "outside": OUTSIDE_POLICY}} if the_rig is not None else {}),
            "onnx_sha256": sha256_file(tmp), "parity": parity, "notes": notes,
            "tool_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(sidecar_path, sidecar)
    return out
