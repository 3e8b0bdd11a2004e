"""Run an exported ``.onnx`` with OpenVINO on the CPU: the same graph ONNX Runtime runs.

OpenVINO's CPU plugin silently computes in bfloat16 on CPUs that have it (AVX-512 BF16, AMX)
unless told otherwise, so the runner always sets ``INFERENCE_PRECISION_HINT``: f32 by default, bf16
only when asked. For bf16 the load also compiles the graph in f32, runs both on a check input and
keeps the difference (``precision_report``, printed by the CLI), so the reduced precision is never
hidden behind a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, MissingDependency
from lutfuse_deploy.runtime.base import vi_channels
from lutfuse_deploy.runtime.graph import GraphRunner, first_line

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
DEVICES = ("cpu",)


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependency("openvino", "openvino") from None
    return openvino


def check_input(kind: str, io: str, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic, image-like batch (smooth structure plus noise) for the load-time check."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 127.5 + 100.0 * np.sin(xx / 19.0) * np.cos(yy / 13.0)
    ir = np.clip(base + rng.normal(0, 12, base.shape), 0, 255)
    vi = np.stack([np.clip(base[::-1] * f + rng.normal(0, 12, base.shape), 0, 255) for f in (1.0, 0.8, 0.6)])
    vi = vi[: vi_channels(kind)]
    dtype = np.uint8 if io == "uint8" else np.float32
    return np.rint(ir)[None, None].astype(dtype), np.rint(vi)[None].astype(dtype)


def precision_error(test: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Max abs difference and the histogram of 8-bit differences (|LSB| 0, 1, 2, >2) as fractions.

    Float outputs are turned into the 8-bit images every backend writes (clamp [0, 1], x255, round).
    """
    from lutfuse_deploy.runtime.torch import to_uint8

    if ref.dtype == np.uint8:
        a8, b8 = test, ref
        max_abs = float(np.abs(test.astype(np.int16) - ref.astype(np.int16)).max()) / 255.0
    else:
        a8, b8 = to_uint8(test), to_uint8(ref)
        max_abs = float(np.abs(test.astype(np.float64) - ref.astype(np.float64)).max())
    lsb = np.abs(a8.astype(np.int16) - b8.astype(np.int16))
    n = lsb.size
    hist = {"0": int((lsb == 0).sum()), "1": int((lsb == 1).sum()), "2": int((lsb == 2).sum()),
            ">2": int((lsb > 2).sum())}
    return {"max_abs": max_abs, "max_lsb": int(lsb.max()), "pixels": n,
            "lsb_fraction": {k: v / n for k, v in hist.items()}}


class OvRunner(GraphRunner):
    backend = "openvino"

    def __init__(self, model: str | Path, threads: int | None = None, device: str = "cpu",
                 precision: str = "fp32") -> None:
        super().__init__(model)
        if device not in DEVICES:
            raise InputError(f"unknown device {device!r} for openvino: this project runs it on cpu only")
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision!r} for openvino: choose one of {', '.join(PRECISIONS)}")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.device = device
        self.precision = precision
        self.precision_report: dict[str, Any] | None = None
        self.compiled: Any = None
        self.request: Any = None
        self.activate_impl()  # load now: a bad file fails here, and kind/io are known before infer
        self.is_active = True

    # -- loading ---------------------------------------------------------------------------------
    def _read(self, core: Any) -> Any:
        try:
            return core.read_model(str(self.path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses per frontend
            raise InputError(f"{self.path}: openvino cannot read it ({first_line(exc)})") from None

    def _compile(self, core: Any, graph: Any, precision: str) -> Any:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            compiled = core.compile_model(graph, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - an unsupported op surfaces as a RuntimeError
            raise InputError(f"{self.path}: openvino cannot compile it ({first_line(exc)})") from None
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
        if got.get_type_name() != PRECISIONS[precision]:  # never run another precision than asked for
            raise InputError(f"openvino compiled {self.path.name} in {got.get_type_name()}, not the {precision} asked for")
        return compiled

    def _props(self) -> dict[str, str]:
        """The ONNX metadata (kind, size_multiple) when there is no sidecar and onnx is installed."""
        if self.metadata:
            return {}
        try:
            import onnx
        except ImportError:
            return {}
        proto = onnx.load(str(self.path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}

    def activate_impl(self) -> None:
        if self.compiled is not None:
            return
        ov = _import_openvino()
        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise InputError("--precision bf16: this CPU has no bfloat16 support in OpenVINO (use fp32)")
        graph = self._read(core)
        names = {p.get_any_name(): p for p in graph.inputs}
        vi_shape: list[Any] = []
        if "vi" in names:
            vi_shape = [d.get_length() if d.is_static else None for d in names["vi"].get_partial_shape()]
        ir_uint8 = "ir" in names and names["ir"].get_element_type() == ov.Type.u8
        self.describe(list(names), [o.get_any_name() for o in graph.outputs], self._props(), vi_shape, ir_uint8)
        self.compiled = self._compile(core, graph, self.precision)
        self.request = self.compiled.create_infer_request()
        if self.precision != "fp32":
            self.precision_report = self._measure_precision(core, graph)

    def _measure_precision(self, core: Any, graph: Any) -> dict[str, Any]:
        """Run the check input through this compile and an f32 compile of the same graph."""
        (ih, iw), (h, w) = self.check_sizes()
        ir = check_input(self.kind, self.io, ih, iw)[0]
        vi = check_input(self.kind, self.io, h, w)[1]
        ref = self._compile(core, graph, "fp32").create_infer_request()
        ref.infer({"ir": ir, "vi": vi})
        want = np.array(ref.get_output_tensor(0).data, copy=True)
        report = precision_error(self.infer_impl(ir, vi), want)
        report.update(precision=self.precision, reference="fp32", check_input=f"synthetic {w}x{h}")
        return report

    def describe_precision(self) -> str:
        """One line for the user: the precision, and for reduced precision its measured error."""
        if self.precision_report is None:
            return f"openvino: {self.path.name} compiled in {self.precision} (INFERENCE_PRECISION_HINT f32)"
        r = self.precision_report
        frac = r["lsb_fraction"]
        return (f"openvino: {self.path.name} in {self.precision}; against an fp32 compile on a "
                f"{r['check_input']} check input: max abs {r['max_abs']:.2e}, 8-bit pixels off by "
                f"0: {frac['0']:.2%}, 1: {frac['1']:.2%}, 2: {frac['2']:.2%}, >2: {frac['>2']:.2%}")

    def deactivate_impl(self) -> None:
        """The compiled model is kept: recompiling costs more than it saves."""

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        self.request.infer({"ir": np.ascontiguousarray(ir), "vi": np.ascontiguousarray(vi)})
        return np.array(self.request.get_output_tensor(0).data, copy=True)  # the request reuses its buffer
