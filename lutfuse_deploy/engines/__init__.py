"""Engines: targets (devices as data), .onnx -> TensorRT engine, build bundles, manifests, INT8.

Build and run are separate: this package builds; ``lutfuse_deploy.runtime.tensorrt`` loads and runs.
Nothing here imports TensorRT, ONNX or torch at import time; the modules that need them import them
inside the functions that use them.

* ``targets``     ``recipes/targets/*.yaml``: load, validate (data only)
* ``local_gpu``   the local GPU and ``--target auto``
* ``onnx_info``   what the builder needs to know about an exported model
* ``precision``   what TensorRT 10 / 11 can do with fp32/fp16/int8/best; which layers stay FP32
* ``tensorrt``    ``onnx_to_engine`` (TensorRT Python API)
* ``calibration`` calibration data, the TensorRT 10 entropy calibrator, Q/DQ insertion for TensorRT 11
* ``manifest``    ``manifest.json``: write, check against this machine, reuse decisions
* ``bundle``      build bundles with ``build.sh`` (toolkit + trtexec); ``remote``: ssh/scp
* ``build``       ``build_engine``: the orchestration ``lutfuse-deploy build-engine`` calls
"""

from __future__ import annotations

from lutfuse_deploy.engines.targets import (
    PRECISIONS,
    ShapeProfile,
    Target,
    list_targets,
    load_target,
    parse_shapes,
)

__all__ = ["PRECISIONS", "ShapeProfile", "Target", "list_targets", "load_target", "parse_shapes"]
