"""Run an exported ``.onnx`` with ONNX Runtime (CPU by default, CUDA when asked and available).

Kind, io and the sizes the graph takes are worked out as for every graph runner (``runtime.graph``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, MissingDependency
from lutfuse_deploy.runtime.graph import GraphRunner, first_line

DEVICES = ("cpu", "cuda")


class OrtRunner(GraphRunner):
    backend = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None = None, device: str = "cpu",
                 graph_optimization_level: str | None = None, providers: list[str] | None = None,
                 spin: bool = True) -> None:
        super().__init__(model)
        from lutfuse_deploy.export.ort_options import DEFAULT_LEVEL

        if device not in DEVICES:
            raise InputError(f"unknown device {device!r} for onnxruntime: choose one of {', '.join(DEVICES)}")
        self.threads = threads
        self.device = device
        self.level = graph_optimization_level or DEFAULT_LEVEL
        self.providers = providers
        self.spin = spin
        self.session: Any = None
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
            raise InputError(f"{self.path}: onnxruntime cannot load it ({first_line(exc)})") from None
        self._describe()

    def _describe(self) -> None:
        """kind, io and size limits from the sidecar, the ONNX metadata or the graph's inputs."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        vi = inputs.get("vi")
        self.describe(list(inputs), [o.name for o in self.session.get_outputs()],
                      self.session.get_modelmeta().custom_metadata_map,
                      vi.shape if vi is not None else [], "ir" in inputs and inputs["ir"].type == "tensor(uint8)")

    def deactivate_impl(self) -> None:
        """The session is kept: reloading costs more than it saves (it holds a few MB)."""

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        feed = {"ir": np.ascontiguousarray(ir), "vi": np.ascontiguousarray(vi)}
        return self.session.run(["fused"], feed)[0]
