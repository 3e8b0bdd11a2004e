"""The error family the CLI turns into one line and an exit status (never a traceback)."""

from __future__ import annotations


class LutfuseError(Exception):
    """Base class: a problem the user can fix; the CLI prints ``error: <message>`` and exits."""

    exit_code = 1


class InputError(LutfuseError):
    """An image, folder or pair cannot be used."""


class CheckpointError(LutfuseError):
    """A checkpoint is missing, corrupt, of the wrong kind or holds non-finite values."""


class OutputError(LutfuseError):
    """An output cannot be written (an input's path, a folder in the way, no permission, disk full)."""


class ConfigError(LutfuseError):
    """A recipe, target or budget file has an unknown key or a bad value."""


class RigError(LutfuseError):
    """A rig file, point list or calibration is unusable (or a refinement would have made it worse)."""


class ExportError(LutfuseError):
    """Export or an ONNX check failed."""


class EngineError(LutfuseError):
    """Building, bundling or loading a TensorRT engine failed or was refused."""


class BudgetExceeded(LutfuseError):
    """A latency budget did not hold."""


class MissingDependency(LutfuseError):
    """An optional library is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'lutfuse-deploy[{extra}]'")
        self.module = module
        self.extra = extra
