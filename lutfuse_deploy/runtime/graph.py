"""What every runner of an exported ``.onnx`` shares: the file checks, the model kind and io, and the
sizes the graph accepts. ONNX Runtime and OpenVINO read the same graph and must refuse the same inputs.

The kind and io come from the sidecar ``FILE.json`` written by export, else from the graph's
metadata, else from the graph itself (uint8 inputs, 3 or 1 visible channels). Sizes the graph cannot
take (another size than a static export's, odd sizes for MMDRFuse's teacher) are refused with one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy import MODEL_KINDS
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner


def read_sidecar(path: Path) -> dict[str, Any]:
    """``FILE.json`` beside ``FILE.onnx`` (empty when absent)."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    from lutfuse_deploy.io.files import read_json_object

    return read_json_object(side)


def first_line(exc: BaseException) -> str:
    """A library's exception as one short line for an ``error:`` message."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def graph_rig(sidecar: Mapping[str, Any], props: Mapping[str, str], path: Path) -> Any:
    """The rig an exported graph carries (sidecar, else the graph's metadata), or None."""
    import json

    data = sidecar.get("rig")
    if data is None and props.get("rig"):
        data = props["rig"]
    if isinstance(data, str):  # the graph's metadata holds the rig as JSON text (also when no sidecar was found)
        try:
            data = json.loads(data)
        except ValueError:
            raise InputError(f"{path.name}: its rig metadata is not JSON") from None
    if data is None:
        return None
    from lutfuse_deploy.rig.file import KEYS, rig_from_dict

    return rig_from_dict({k: v for k, v in dict(data).items() if k in KEYS}, f"{path.name} (its rig)")


class GraphRunner(Runner):
    """Base of the runners that load an exported ``.onnx``; subclasses call ``describe`` after loading."""

    def __init__(self, model: str | Path) -> None:
        super().__init__()
        self.path = Path(model)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        if self.path.suffix.lower() != ".onnx":
            raise InputError(f"{self.path}: {self.backend} runs .onnx files (export one with `lutfuse-deploy export`)")
        self.metadata = read_sidecar(self.path)
        self.multiple = 1
        self._static_hw: tuple[int, int] | None = None

    def describe(self, inputs: Sequence[str], outputs: Sequence[str], props: Mapping[str, str],
                 vi_shape: Sequence[Any], ir_uint8: bool) -> None:
        """Set kind, io and size limits; ``vi_shape`` holds ints for static dimensions."""
        if set(inputs) != {"ir", "vi"} or list(outputs) != ["fused"]:
            raise InputError(f"{self.path}: expected inputs ir, vi and output fused, got {sorted(inputs)}")
        kind = self.metadata.get("kind") or props.get("kind")
        if kind not in MODEL_KINDS:
            kind = "lutfuse" if vi_shape[1] == 3 else "mmdrfuse-student"
        self.kind = str(kind)
        self.io = "uint8" if ir_uint8 else "float"
        self.multiple = int(self.metadata.get("size_multiple") or props.get("size_multiple") or 1)
        if self.kind == "mmdrfuse-teacher":
            self.multiple = max(self.multiple, 2)
        h, w = vi_shape[2], vi_shape[3]
        self._static_hw = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        if not self.metadata:
            self.metadata = {"kind": self.kind, "io": self.io, **props}
        self.rig = graph_rig(self.metadata, props, self.path)

    def check_inputs(self, ir: np.ndarray, vi: np.ndarray) -> None:
        super().check_inputs(ir, vi)
        if self.rig is not None:  # a rig graph: its sizes are the rig's, checked by the base class
            return
        h, w = ir.shape[2], ir.shape[3]
        if self._static_hw and (h, w) != self._static_hw:
            sh, sw = self._static_hw
            raise InputError(f"{self.path.name} was exported for {sw}x{sh} only, got {w}x{h} "
                             "(export with --dynamic for any size)")
        if self.kind == "mmdrfuse-teacher" and (h % 2 or w % 2):  # worded as the PyTorch runner words it
            raise InputError(f"mmdrfuse-teacher needs even height and width (multiples of 2), got {w}x{h}")
        if self.multiple > 1 and (h % self.multiple or w % self.multiple):
            raise InputError(f"{self.kind} needs height and width that are multiples of {self.multiple}, got {w}x{h}")

    def check_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(H, W) of the ir and vi inputs of a check run: the rig's cameras, else one size for both."""
        if self.rig is not None:
            (iw, ih), (vw, vh) = self.rig.ir_size, self.rig.vi_size
            return (ih, iw), (vh, vw)
        hw = self.check_size()
        return hw, hw

    def check_size(self) -> tuple[int, int]:
        """(height, width) of a check input the graph accepts: its static size, else a small one."""
        if self._static_hw:
            return self._static_hw
        m = self.multiple
        return 192 // m * m, 256 // m * m
