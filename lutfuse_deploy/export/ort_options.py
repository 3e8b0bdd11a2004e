"""ONNX Runtime session settings shared by export-time verification and ``runtime.onnxrt``.

Verification must run the graph the way users will, so both build their sessions here.
"""

from __future__ import annotations

from typing import Any

from lutfuse_deploy.errors import InputError, MissingDependency

# "all" adds the NCHWc layout transformer (blocked convolutions) on top of "extended" fusions. The
# default is "extended": NCHWc convolutions round differently and, on the official LUT-Fuse, measured
# no faster and further from the reference outputs (docs in export/graph.py).
LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_LEVEL = "extended"


def session_options(threads: int | None = None, level: str = DEFAULT_LEVEL, spin: bool = True) -> Any:
    """``SessionOptions`` with ``threads`` intra-op threads (None: ONNX Runtime's default) and ``level``.

    ``spin=False`` stops idle pool threads from busy-waiting: slightly slower alone, but they no longer
    steal the cores another backend needs when several run side by side in one process.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None
    if level not in LEVELS:
        raise InputError(f"unknown graph optimisation level {level!r}: choose one of {', '.join(LEVELS)}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one branch: parallel mode only adds overhead
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts
