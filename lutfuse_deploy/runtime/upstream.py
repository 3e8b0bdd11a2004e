"""The upstream LUT-Fuse inference code itself, as a runner: what "x the official code" is timed against.

The released ``scripts/calculate.py`` (github zyb5/LUT-Fuse, MIT) is imported from a reference
folder outside the project, never copied into it: ``<reference>/lutfuse_official_code`` with the
released weights in ``<reference>/lutfuse_official`` (``fine_tuned_lut.npy``,
``generator_context.pth``). ``<reference>`` is the folder given (``profile --upstream-dir``), else
``$LUTFUSE_REFERENCE``, else ``reference`` beside ``$LUTFUSE_DATA`` (``paths.reference_root``).
Where any of it is missing, ``upstream_problem`` says why, and callers skip the upstream lane with
that reason: the toolkit's own PyTorch path is never passed off as the upstream code.

The script imports modules its inference function does not use (``torchvision.transforms``,
``data.simple_dataset``, ``transforms``); empty stand-ins are registered for the import only and
removed afterwards, so they never shadow a real module later.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime.base import Runner

CODE_DIR = "lutfuse_official_code"
SCRIPT = Path("scripts") / "calculate.py"
WEIGHTS_DIR = "lutfuse_official"
TABLE = "fine_tuned_lut.npy"
CONTEXT = "generator_context.pth"
FUNCTION = "apply_fusion_4d_with_interpolation"
#: modules calculate.py imports at the top but does not use for inference, with the names it takes
STAND_INS = {
    "torchvision": (),
    "torchvision.transforms": ("ToPILImage",),
    "data": (),
    "data.simple_dataset": ("RandomCropPair", "SimpleDataSet"),
    "transforms": (),
}


def upstream_root(folder: str | Path | None = None) -> Path:
    """The reference folder that holds the upstream code and weights (see the module docstring)."""
    from lutfuse_deploy.paths import reference_root

    return Path(folder).expanduser().resolve() if folder is not None else reference_root()


def upstream_files(root: Path) -> dict[str, Path]:
    return {"script": root / CODE_DIR / SCRIPT, "table": root / WEIGHTS_DIR / TABLE,
            "context": root / WEIGHTS_DIR / CONTEXT}


def upstream_problem(folder: str | Path | None = None) -> str | None:
    """Why the upstream lane cannot run (a missing file), or None when it can."""
    root = upstream_root(folder)
    for what, path in upstream_files(root).items():
        if not path.is_file():
            return f"upstream LUT-Fuse {what} not found at {path}"
    return None


def _import_script(path: Path) -> types.ModuleType:
    """Import calculate.py under a private name, with stand-ins for its unused imports."""
    added = []
    for name, attrs in STAND_INS.items():
        if name in sys.modules:
            continue
        stub = types.ModuleType(name)
        for attr in attrs:
            setattr(stub, attr, object)
        sys.modules[name] = stub
        added.append(name)
    spec = importlib.util.spec_from_file_location("_lutfuse_upstream_calculate", path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot import it")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - foreign code: any failure is "cannot import"
        raise InputError(f"{path}: cannot import the upstream code ({type(exc).__name__}: {exc})") from None
    finally:
        for name in added:
            sys.modules.pop(name, None)
    if not callable(getattr(module, FUNCTION, None)):
        raise InputError(f"{path}: no function {FUNCTION}")
    return module


class UpstreamRunner(Runner):
    """``apply_fusion_4d_with_interpolation`` with the released weights, on PyTorch CPU (float io).

    Same contract as every runner: float32 IR and RGB on 0..255 in, N x 3 x H x W fused RGB on the
    [0, 1] scale out, unclamped. ``model`` is the reference folder (None: the default one).
    """

    backend = "upstream"

    def __init__(self, model: str | Path | None = None, threads: int | None = None, device: str = "cpu") -> None:
        super().__init__()
        import torch

        if device != "cpu":
            raise InputError("the upstream lane runs on the CPU only (its table loader targets CUDA; "
                             "the project loads the table itself)")
        problem = upstream_problem(model)
        if problem:
            raise InputError(problem)
        files = upstream_files(upstream_root(model))
        self.path = files["script"]
        self.device = "cpu"
        self.threads = threads
        self.kind = "lutfuse"
        self.metadata = {"kind": "lutfuse", "source": "upstream LUT-Fuse code", "script": str(files["script"])}
        self.module: Any = _import_script(files["script"])
        self.table = torch.from_numpy(np.load(files["table"]).astype(np.float32))
        net = self.module.Generator_for_info()
        net.load_state_dict(torch.load(files["context"], map_location="cpu", weights_only=True))
        self.net = net.eval()

    def activate_impl(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)

    def infer_impl(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t_ir = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))
            t_vi = torch.from_numpy(np.ascontiguousarray(vi, dtype=np.float32))
            out = getattr(self.module, FUNCTION)(t_vi, t_ir, self.table, self.net)
            return out.numpy()
