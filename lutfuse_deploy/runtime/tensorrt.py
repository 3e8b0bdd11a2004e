"""``TrtRunner``: run a serialized TensorRT engine (TensorRT 10/11 name-based I/O API).

Loading checks the engine's ``manifest.json`` first (GPU architecture, TensorRT version, engine
sha256) and refuses a mismatch in one line, before TensorRT can crash on a foreign plan. Device
buffers are torch CUDA tensors (no pycuda): ``set_input_shape`` + ``set_tensor_address`` +
``execute_async_v3`` on the runner's own CUDA stream. Besides ``infer``, the runner offers the
profiler's optional hooks: ``device``, ``cuda_stream``, ``device_callable`` and ``cuda_graph_callable``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lutfuse_deploy.engines.manifest import (
    check_engine_file,
    check_runtime,
    manifest_for_engine,
    read_manifest,
)
from lutfuse_deploy.engines.tensorrt import import_tensorrt, process_logger
from lutfuse_deploy.errors import EngineError, InputError
from lutfuse_deploy.runtime.base import INPUT_NAMES, OUTPUT_NAME, Runner

if TYPE_CHECKING:
    import tensorrt as trt
    import torch


class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, model: str | Path, *, device: str | None = "cuda", threads: int | None = None) -> None:
        super().__init__()
        del threads  # TensorRT has no CPU thread setting; accepted so every backend takes the same options
        self.path = Path(model)
        if not self.path.is_file():
            raise InputError(f"no such engine file: {self.path}")
        dev = str(device or "cuda")
        if not dev.startswith("cuda"):
            raise InputError(f"TensorRT engines run on a CUDA GPU only (device {dev!r}): use --device cuda")
        self.device = dev if ":" in dev else "cuda:0"
        self.device_index = int(self.device.split(":", 1)[1])
        self.manifest = read_manifest(manifest_for_engine(self.path))
        self.kind = str(self.manifest["kind"])
        self.io = str(self.manifest["io"])
        if self.manifest.get("rig"):  # an engine built from a rig graph takes the two cameras' raw frames
            from lutfuse_deploy.rig.file import rig_from_dict

            self.rig = rig_from_dict(self.manifest["rig"], f"{self.path.name} (its manifest's rig)")
        self.metadata = {
            "engine": str(self.path),
            **{
                k: self.manifest.get(k)
                for k in (
                    "target",
                    "model",
                    "precision",
                    "shapes",
                    "flags",
                    "tensorrt_version",
                    "gpu_name",
                    "compute_capability",
                    "version_compatible",
                    "hardware_compatibility",
                )
            },
        }
        self.cuda_stream: torch.cuda.Stream | None = None
        self._logger: Any = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._hw_range: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (1 << 30, 1 << 30))

    # -- lifecycle -------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        import_tensorrt()
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise EngineError("TensorRT needs a CUDA GPU, but torch.cuda.is_available() is False here")
        major, minor = torch.cuda.get_device_capability(self.device_index)
        check_runtime(
            self.manifest,
            compute_capability=f"{major}.{minor}",
            gpu_name=torch.cuda.get_device_name(self.device_index),
            tensorrt_version=str(trt.__version__),
        )
        check_engine_file(self.manifest, self.path)
        torch.cuda.set_device(self.device_index)
        self._logger = process_logger(trt)  # TensorRT keeps one logger per process
        self._runtime = trt.Runtime(self._logger)
        if self.manifest.get("version_compatible"):
            # a version-compatible plan carries its own lean runtime: host code the runtime must allow
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EngineError(f"TensorRT could not deserialize {self.path.name} (see the TensorRT log above)")
        names = {
            engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i))
            for i in range(engine.num_io_tensors)
        }
        want = {**{n: trt.TensorIOMode.INPUT for n in INPUT_NAMES}, OUTPUT_NAME: trt.TensorIOMode.OUTPUT}
        if any(names.get(n) != mode for n, mode in want.items()):
            raise EngineError(
                f"{self.path.name}: expected inputs ir, vi and output fused, got {sorted(names)}"
            )
        want_dtype = trt.uint8 if self.io == "uint8" else trt.float32
        if engine.get_tensor_dtype("ir") != want_dtype:
            raise EngineError(
                f"{self.path.name}: input dtype {engine.get_tensor_dtype('ir')} does not match io {self.io}"
            )
        lo, _opt, hi = engine.get_tensor_profile_shape("ir", 0)
        self._hw_range = ((lo[2], lo[3]), (hi[2], hi[3]))
        self._engine = engine
        self._context = engine.create_execution_context()
        self.cuda_stream = torch.cuda.Stream(device=self.device_index)

    def deactivate_impl(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._logger = None
        self.cuda_stream = None

    # -- inference -------------------------------------------------------------------------------
    def _to_device(self, ir: np.ndarray, vi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        assert self.cuda_stream is not None
        with torch.cuda.stream(self.cuda_stream):
            return (
                torch.from_numpy(np.ascontiguousarray(ir)).to(self.device, non_blocking=True),
                torch.from_numpy(np.ascontiguousarray(vi)).to(self.device, non_blocking=True),
            )

    def _enqueue(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Bind ``ir``/``vi``, allocate ``fused`` and enqueue on ``cuda_stream`` (not synchronised)."""
        import torch

        ctx, engine, stream = self._context, self._engine, self.cuda_stream
        assert ctx is not None and engine is not None and stream is not None, "runner is not active"
        (h_lo, w_lo), (h_hi, w_hi) = self._hw_range
        h, w = int(ir.shape[2]), int(ir.shape[3])
        if not (h_lo <= h <= h_hi and w_lo <= w <= w_hi):
            raise InputError(
                f"{w}x{h} (WxH) is outside this engine's profile {w_lo}x{h_lo}..{w_hi}x{h_hi}: "
                "rebuild with build-engine --shapes"
            )
        for name, tensor in (("ir", ir), ("vi", vi)):
            if not ctx.set_input_shape(name, tuple(tensor.shape)):
                raise InputError(f"{name} shape {tuple(tensor.shape)} is outside this engine's profile")
            ctx.set_tensor_address(name, int(tensor.data_ptr()))
        dims = ctx.get_tensor_shape(OUTPUT_NAME)
        with torch.cuda.stream(stream):  # allocate on the stream that writes it (caching-allocator safety)
            out = torch.empty(
                [dims[i] for i in range(len(dims))],
                dtype=_torch_dtype(engine.get_tensor_dtype(OUTPUT_NAME)),
                device=self.device,
            )
        ctx.set_tensor_address(OUTPUT_NAME, int(out.data_ptr()))
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT could not run {self.path.name} (execute_async_v3 returned False)")
        return out

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        t_ir, t_vi = self._to_device(ir, vi)
        out = self._enqueue(t_ir, t_vi)
        assert self.cuda_stream is not None
        self.cuda_stream.synchronize()
        return np.asarray(out.cpu().numpy())

    # -- profiler hooks (duck-typed, see lutfuse_deploy/profile/cuda.py) -----------------------------
    def device_callable(self, ir: np.ndarray, vi: np.ndarray) -> Callable[[], object] | None:
        """Copy the inputs once; the returned call runs device-to-device on ``cuda_stream``."""
        self.activate()
        self.check_inputs(ir, vi)
        t_ir, t_vi = self._to_device(ir, vi)
        return lambda: self._enqueue(t_ir, t_vi)

    def cuda_graph_callable(self, ir: np.ndarray, vi: np.ndarray) -> Callable[[], object] | None:
        """Capture one enqueue in a CUDA graph on static buffers (after a warm-up run, as TensorRT needs)."""
        import torch

        self.activate()
        self.check_inputs(ir, vi)
        t_ir, t_vi = self._to_device(ir, vi)
        keep = self._enqueue(t_ir, t_vi)  # sets shapes and lets TensorRT finish lazy initialisation
        stream, ctx = self.cuda_stream, self._context
        assert stream is not None and ctx is not None
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=stream):
                ctx.execute_async_v3(stream.cuda_stream)
        except RuntimeError:
            return None  # capture not possible here: the lane is simply absent

        def replay() -> object:
            with torch.cuda.stream(stream):
                graph.replay()
            return keep

        return replay


def _torch_dtype(dtype: Any) -> torch.dtype:
    import tensorrt as trt
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.uint8: torch.uint8,
        trt.int8: torch.int8,
        trt.int32: torch.int32,
    }
    if dtype not in table:
        raise EngineError(f"unsupported engine output dtype {dtype}")
    return table[dtype]
