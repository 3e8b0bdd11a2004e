"""What an exported artifact is, from its own records: an ONNX graph (metadata + sidecar JSON) or an
engine bundle (manifest.json), each checked against the bytes on disk.

``info`` prints these; each description is an ordered dict of label -> value so a new record (a
camera rig, say) is one more key, and ``--json`` prints the same dict. A record that does not match
its file (a graph edited after export, an engine swapped after its build) is an error, as it is
when the file is loaded to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lutfuse_deploy.errors import EngineError, InputError
from lutfuse_deploy.io.files import sha256_file

_DTYPES = {1: "float32", 2: "uint8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


def _tensor(value: Any) -> str:
    t = value.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) if d.HasField("dim_value") or d.dim_param else "?" for d in t.shape.dim]
    return f"{_DTYPES.get(t.elem_type, f'type {t.elem_type}')} [{', '.join(dims)}]"


def describe_graph(path: str | Path) -> dict[str, Any]:
    """An exported ``.onnx``: its inputs and outputs as the graph declares them, and what export
    recorded (kind, opset, lowering, io, the 8-bit mapping, source checkpoint, parity verdict)."""
    from lutfuse_deploy.errors import MissingDependency
    from lutfuse_deploy.runtime.base import baked_tanh_map
    from lutfuse_deploy.runtime.graph import read_sidecar

    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    side = read_sidecar(path)
    if side.get("onnx_sha256") and side["onnx_sha256"] != sha256_file(path):
        raise InputError(f"{path}: does not match its sidecar {path.with_suffix('.json').name} (onnx_sha256 "
                         "differs): the graph was changed after export, or the sidecar belongs to another graph")
    record = {**props, **side}
    kind = str(record.get("kind") or "unknown (no export record)")
    io = str(record.get("io") or "unknown")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    out: dict[str, Any] = {
        "path": str(path),
        "artifact": "onnx graph",
        "kind": kind,
        "inputs": {v.name: _tensor(v) for v in model.graph.input},
        "outputs": {v.name: _tensor(v) for v in model.graph.output},
        "opset": opset,
        "lowering": record.get("lowering"),
        "io": io,
        "tanh_to_8bit": baked_tanh_map(kind, io, record) if kind.startswith("mmdrfuse") else None,
        "config": record.get("config") if isinstance(record.get("config"), dict) else _json(record.get("config")),
        "source": side.get("source") or {k: props[k] for k in ("source_sha256", "weights_sha256") if k in props},
        "sha256": sha256_file(path),
        "sidecar": str(path.with_suffix(".json")) if side else None,
        "parity": _parity(side.get("parity")),
        "rig": _rig(record.get("rig")),
        "producer": f"{model.producer_name} {model.producer_version}".strip() or None,
    }
    return out


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def _rig(rig: Any) -> str | None:
    """A rig graph's rig in one line (sizes, output, coverage), or None for a one-size graph."""
    data = _json(rig)
    if not isinstance(data, dict):
        return None
    from lutfuse_deploy.rig.file import KEYS, rig_from_dict

    return rig_from_dict({k: v for k, v in data.items() if k in KEYS}, "the graph's rig").describe() + (
        "; the IR is warped inside the graph, so fuse needs no --rig")


def _parity(parity: Any) -> dict[str, Any] | None:
    """The export's verdict in brief (the sidecar keeps every input's row)."""
    if not isinstance(parity, dict):
        return None
    return {"rule": parity.get("rule"), "backend": parity.get("backend"), "inputs": len(parity.get("inputs") or []),
            "max_abs": parity.get("max_abs"), "worst_fraction_of_bound": parity.get("worst_fraction_of_bound"),
            "max_lsb": parity.get("max_lsb")}


def describe_bundle(path: str | Path) -> dict[str, Any]:
    """An engine, or the bundle folder holding it: the manifest, with its ONNX and engine checked."""
    from lutfuse_deploy.engines.manifest import (
        MANIFEST_NAME,
        check_engine_file,
        manifest_for_engine,
        read_manifest,
    )

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / MANIFEST_NAME if path.is_dir() else manifest_for_engine(path)
    m = read_manifest(manifest_path)
    onnx_file = folder / str(m["onnx_file"])
    if onnx_file.is_file() and sha256_file(onnx_file) != m["onnx_sha256"]:
        raise EngineError(f"{onnx_file}: does not match its manifest (onnx_sha256 differs)")
    engine = folder / str(m["engine_file"]) if m.get("engine_file") else None
    if engine is not None:
        check_engine_file(m, engine)
    state = ("built: " + str(engine)) if engine is not None else "bundle, not built yet (run its build.sh on the device)"
    return {
        "path": str(path),
        "artifact": "tensorrt engine" if engine is not None else "engine bundle",
        "kind": m["kind"],
        "status": state,
        "target": m["target"],
        "precision": m["precision"],
        "io": m["io"],
        "shapes": m["shapes"],
        "compute_capability": m.get("compute_capability"),
        "gpu_name": m.get("gpu_name"),
        "tensorrt_version": m.get("tensorrt_version") or f"{m.get('tensorrt_major')}.x",
        "onnx": {"file": str(onnx_file), "sha256": m["onnx_sha256"], "present": onnx_file.is_file()},
        "flags": m.get("flags"),
        "manifest": str(manifest_path),
    }
