"""Run an exported ``.onnx`` with ONNX Runtime (CPU by default, CUDA when asked and available).

The model kind and io come from the sidecar ``FILE.json`` written by export, else from the graph's
metadata, else from the graph itself (uint8 inputs, 3 or 1 visible channels). Sizes the graph cannot
take (another size than a static export's, odd sizes for MMDRFuse's teacher) are refused with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy import MODEL_KINDS
from lutfuse_deploy.errors import InputError, MissingDependency
from lutfuse_deploy.runtime.base import Runner

DEVICES = ("cpu", "cuda")


def read_sidecar(path: Path) -> dict[str, Any]:
    """``FILE.json`` beside ``FILE.onnx`` (empty when absent)."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    from lutfuse_deploy.io.files import read_json_object

    return read_json_object(side)


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None = None, device: str = "cpu",
                 graph_optimization_level: str | None = None, providers: list[str] | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        from lutfuse_deploy.export.ort_options import DEFAULT_LEVEL

        self.path = Path(model)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        if self.path.suffix.lower() != ".onnx":
            raise InputError(f"{self.path}: onnxruntime runs .onnx files (export one with `lutfuse-deploy export`)")
        if device not in DEVICES:
            raise InputError(f"unknown device {device!r} for onnxruntime: choose one of {', '.join(DEVICES)}")
        self.threads = threads
        self.device = device
        self.level = graph_optimization_level or DEFAULT_LEVEL
        self.providers = providers
        self.spin = spin
        self.metadata = read_sidecar(self.path)
        self.session: Any = None
        self._static_hw: tuple[int, int] | None = None
        self.activate_impl()  # load now: a bad file fails here, and kind/io are known before infer
        self.is_active = True

    def _providers(self, ort: Any) -> list[str]:
        available = ort.get_available_providers()
        if self.providers:
            missing = [p for p in self.providers if p not in available]
            if missing:
                raise InputError(f"onnxruntime provider(s) {', '.join(missing)} not available here "
                                 f"(available: {', '.join(available)})")
            return list(self.providers)
        if self.device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise InputError("--device cuda asked for, but this onnxruntime has no CUDAExecutionProvider "
                                 "(pip install onnxruntime-gpu)")
            return ["CUDAExecutionProvider"]  # no silent CPU fallback
        return ["CPUExecutionProvider"]

    def activate_impl(self) -> None:
        if self.session is not None:
            return
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependency("onnxruntime", "onnx") from None
        from lutfuse_deploy.export.ort_options import session_options

        opts = session_options(self.threads, self.level, self.spin)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=self._providers(ort))
        except Exception as exc:  # noqa: BLE001 - ORT raises Fail/InvalidGraph/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{self.path}: onnxruntime cannot load it ({first})") from None
        self._describe()

    def _describe(self) -> None:
        """kind, io and size limits from the sidecar, the ONNX metadata or the graph's inputs."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"ir", "vi"} or [o.name for o in self.session.get_outputs()] != ["fused"]:
            raise InputError(f"{self.path}: expected inputs ir, vi and output fused, got {sorted(inputs)}")
        props = self.session.get_modelmeta().custom_metadata_map
        vi_shape = inputs["vi"].shape
        kind = self.metadata.get("kind") or props.get("kind")
        if kind not in MODEL_KINDS:
            kind = "lutfuse" if vi_shape[1] == 3 else "mmdrfuse-student"
        self.kind = str(kind)
        self.io = "uint8" if inputs["ir"].type == "tensor(uint8)" else "float"
        self.multiple = int(self.metadata.get("size_multiple") or props.get("size_multiple") or 1)
        if self.kind == "mmdrfuse-teacher":
            self.multiple = max(self.multiple, 2)
        h, w = vi_shape[2], vi_shape[3]
        self._static_hw = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        if not self.metadata:
            self.metadata = {"kind": self.kind, "io": self.io, **props}

    def deactivate_impl(self) -> None:
        """The session is kept: reloading costs more than it saves (it holds a few MB)."""

    def check_inputs(self, ir: np.ndarray, vi: np.ndarray) -> None:
        super().check_inputs(ir, vi)
        h, w = ir.shape[2], ir.shape[3]
        if self._static_hw and (h, w) != self._static_hw:
            sh, sw = self._static_hw
            raise InputError(f"{self.path.name} was exported for {sw}x{sh} only, got {w}x{h} "
                             "(export with --dynamic for any size)")
        if self.multiple > 1 and (h % self.multiple or w % self.multiple):
            raise InputError(f"{self.kind} needs height and width that are multiples of {self.multiple}, got {w}x{h}")

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        feed = {"ir": np.ascontiguousarray(ir), "vi": np.ascontiguousarray(vi)}
        return self.session.run(["fused"], feed)[0]
