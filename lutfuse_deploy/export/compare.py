"""``compare``: an existing graph against its checkpoint on real pairs, under export's parity rule.

Export judges a graph once, on synthetic and two real inputs, before writing it. A graph met later
(another machine's export, an older file, a graph run by OpenVINO instead of ONNX Runtime) can be
judged the same way on any pairs: each pair's float64 truth comes from the checkpoint, the graph
runs in the chosen runtime, and ``parity.judge`` applies ``PARITY_RULE`` (Polygraphy's
``run --onnxrt`` habit, with this project's rule instead of a fixed tolerance).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.errors import InputError, LutfuseError
from lutfuse_deploy.export.parity import PARITY_RULE, ParityInput, judge, truth_of

GRAPH_BACKENDS = ("onnxruntime", "openvino")


@dataclass
class Comparison:
    graph: str
    checkpoint: str
    backend: str
    kind: str
    io: str
    rule: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per judged pair
    skipped: list[str] = field(default_factory=list)  # pairs that could not be judged, one line each
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "checkpoint": self.checkpoint, "backend": self.backend, "kind": self.kind,
                "io": self.io, "rule": self.rule, "verdict": "PASS" if self.rows and not self.failed else "FAIL",
                "pairs": self.rows, "skipped": self.skipped, "notes": self.notes}


def compare_graph(graph: str | Path, checkpoint: str | Path, ir: str | Path, vi: str | Path,
                  backend: str = "onnxruntime", threads: int | None = None, ir16: str = "refuse",
                  limit: int | None = None) -> Comparison:
    """Judge ``graph`` (run by ``backend``) against ``checkpoint``'s float64 truth on the pairs in
    ``ir``/``vi`` (two images or two folders). A pair the graph cannot take is skipped with its reason."""
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.io.images import find_pairs, load_pair
    from lutfuse_deploy.runtime import create_runner
    from lutfuse_deploy.runtime.base import vi_channels

    if backend not in GRAPH_BACKENDS:
        raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(GRAPH_BACKENDS)}")
    pairs, problems = find_pairs(Path(ir), Path(vi))
    if limit is not None:
        pairs = pairs[:limit]
    model, meta = load_model(checkpoint)
    runner = create_runner(graph, backend, threads=threads)
    if runner.kind != meta["kind"]:
        raise InputError(f"{graph} is a {runner.kind} graph but {checkpoint} holds a {meta['kind']} model")
    report = Comparison(str(graph), str(checkpoint), backend, runner.kind, runner.io,
                        PARITY_RULE if runner.io == "float" else "8-bit output within 1 LSB of float64 truth's 8-bit image",
                        skipped=list(problems))
    source = (runner.metadata.get("source") or {}).get("weights_sha256") or runner.metadata.get("weights_sha256")
    if source and source != meta["weights_sha256"]:
        report.notes.append(f"the graph was exported from other weights (weights_sha256 {str(source)[:12]}...) "
                            f"than {Path(checkpoint).name} holds ({meta['weights_sha256'][:12]}...)")
    model64 = copy.deepcopy(model).double()
    vi_mode = "RGB" if vi_channels(runner.kind) == 3 else "L"
    with runner:
        for pair in pairs:
            try:
                a, b = load_pair(pair, vi_mode=vi_mode, ir16=ir16)
                item = ParityInput(pair.name, a[None, None].astype(np.float32),
                                   (b.transpose(2, 0, 1) if b.ndim == 3 else b[None])[None].astype(np.float32))
                dtype = np.uint8 if runner.io == "uint8" else np.float32
                got = runner.infer(item.ir.astype(dtype), item.vi.astype(dtype))
            except LutfuseError as exc:
                report.skipped.append(str(exc) if str(exc).startswith(pair.name) else f"{pair.name}: {exc}")
                continue
            row: dict[str, Any] = {"pair": pair.name, "size": f"{a.shape[1]}x{a.shape[0]}"}
            row.update(judge(got, truth_of(model, item, model64), runner.io))
            report.rows.append(row)
    return report
