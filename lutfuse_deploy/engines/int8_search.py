"""Quantise within a tolerance: the Q/DQ graph is measured, and the layers that break the tolerance stay float.

The search (ModelOpt's AutoQuantize habit, on ONNX Runtime's quantiser):

1. quantise every quantisable layer, measure against float32 on the check pairs (``int8_check``);
   within ``--int8-tolerance``: done;
2. otherwise quantise each layer group alone (ONNX Runtime's ``nodes_to_exclude`` on all the others,
   scales from one calibration) and measure: the group that does the most damage by itself is the
   most sensitive (leaving one out alone was tried first: on LUT-Fuse's context network every single
   exclusion left the worst pixel where it was, so it ranked nothing);
3. keep groups in float in that order, measuring after each, until the tolerance holds; past the
   share of layers the tolerance lets stay float, refuse with what was reached.

A group is one quantisable node; a graph with more than ``MAX_GROUPS`` of them is cut into that many
runs of consecutive nodes, so the search stays at most ``2 * MAX_GROUPS + 1`` quantisations long.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lutfuse_deploy.engines.calibration import QUANTIZED_OPS, CalibrationSet, insert_qdq
from lutfuse_deploy.engines.int8_check import (
    CheckReport,
    ErrorStats,
    Tolerance,
    mean_metrics,
    measure,
    outputs_8bit,
)
from lutfuse_deploy.engines.onnx_info import node_macs
from lutfuse_deploy.errors import EngineError

MAX_GROUPS = 12


@dataclass(frozen=True)
class LayerGroup:
    name: str
    nodes: tuple[str, ...]


def layer_groups(onnx_path: Path, keep_fp32: Sequence[str], max_groups: int = MAX_GROUPS) -> list[LayerGroup]:
    """The quantisable nodes (``QUANTIZED_OPS`` outside ``keep_fp32``) in graph order, one per group,
    or ``max_groups`` runs of consecutive nodes (network stages) when there are more."""
    import onnx

    kept = set(keep_fp32)
    nodes = [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type in QUANTIZED_OPS and n.name not in kept]
    if len(nodes) <= max_groups:
        return [LayerGroup(n, (n,)) for n in nodes]
    runs = np.array_split(np.arange(len(nodes)), max_groups)
    return [LayerGroup(f"{nodes[r[0]]} .. {nodes[r[-1]]}", tuple(nodes[i] for i in r)) for r in runs]


@dataclass
class Int8Result:
    """What the build measured and decided, for the manifest, the bundle README and the CLI table."""

    tolerance: Tolerance
    all_int8: CheckReport
    shipped: CheckReport
    quantisable: int  # quantisable layers (the lookup's guard excluded)
    float_layers: list[str] = field(default_factory=list)  # kept in float by the search
    macs_float_share: float = 0.0  # share of the quantisable layers' multiply-accumulates left in float
    ranking: list[dict[str, Any]] = field(default_factory=list)  # each group quantised alone, worst first

    @property
    def searched(self) -> bool:
        return bool(self.ranking)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": str(self.tolerance),
            "within": self.tolerance.holds(self.shipped.stats),
            "all_int8": self.all_int8.to_dict(),
            "shipped": self.shipped.to_dict(),
            "quantisable_layers": self.quantisable,
            "int8_layers": self.quantisable - len(self.float_layers),
            "float_layers": self.float_layers,
            "macs_float_share": round(self.macs_float_share, 4),
            "quantised_alone": self.ranking,
        }


def quantise_within(
    onnx_in: Path,
    onnx_out: Path,
    calib: CalibrationSet,
    check: CalibrationSet,
    *,
    io: str,
    kind: str,
    guard: Sequence[str],
    tolerance: Tolerance,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Int8Result:
    """Write ``onnx_out`` (Q/DQ, the fewest sensitive layers in float that meet ``tolerance``) and say
    what it measured; refuse in one line when keeping the allowed share in float is not enough."""
    with tempfile.TemporaryDirectory(prefix="lutfuse-int8-") as tmpdir:
        tmp = Path(tmpdir)
        ranges = tmp / "ranges.json"
        ref = outputs_8bit(onnx_in, check, kind)
        progress(
            f"int8: quantising {onnx_in.name} with ONNX Runtime ({len(calib)} calibration pairs), "
            f"checking on {len(check)} other pair{'' if len(check) == 1 else 's'} against float32"
        )

        def trial(exclude: Sequence[str], name: str) -> tuple[Path, ErrorStats, list[np.ndarray]]:
            path = insert_qdq(onnx_in, tmp / f"{name}.onnx", calib, io, [*guard, *exclude], ranges)
            got = outputs_8bit(path, check, kind)
            return path, ErrorStats.of(ref, got), got

        metrics_float = mean_metrics(check, ref)
        first, stats, got = trial([], "all")
        all_int8 = measure(ref, got, check, metrics_float=metrics_float)
        groups = layer_groups(onnx_in, guard)
        total = sum(len(g.nodes) for g in groups)
        result = Int8Result(tolerance, all_int8, all_int8, total)
        chosen = first
        if not tolerance.holds(stats):
            progress(
                f"int8: every layer in INT8 gives {stats.text()}, beyond {tolerance}: quantising each of "
                f"{len(groups)} layer groups alone to find the sensitive ones"
            )
            chosen, float_nodes, got = _search(trial, groups, tolerance, stats, result)
            result.float_layers = float_nodes
            result.shipped = measure(ref, got, check, metrics_float=metrics_float)
            macs = node_macs(onnx_in, check.hw, [n for g in groups for n in g.nodes])
            result.macs_float_share = sum(macs[n] for n in float_nodes) / max(1, sum(macs.values()))
        shutil.copyfile(chosen, onnx_out)
    return result


def _search(
    trial: Callable[[Sequence[str], str], tuple[Path, ErrorStats, list[np.ndarray]]],
    groups: list[LayerGroup],
    tolerance: Tolerance,
    start: ErrorStats,
    result: Int8Result,
) -> tuple[Path, list[str], list[np.ndarray]]:
    total = sum(len(g.nodes) for g in groups)
    everything = [n for g in groups for n in g.nodes]
    scored = []
    for i, g in enumerate(groups):
        alone = set(g.nodes)
        _path, stats, _got = trial([n for n in everything if n not in alone], f"alone{i}")
        scored.append((-tolerance.excess(stats), -stats.mean, i, g, stats))
    scored.sort(key=lambda s: s[:3])  # most damaging alone first; mean error breaks ties of whole LSBs
    result.ranking = [
        {"layers": g.name, "nodes": len(g.nodes), "mean_alone": round(s.mean, 4), "p99_alone": s.p99,
         "max_alone": s.max}
        for *_k, g, s in scored
    ]
    excluded: list[str] = []
    reached = start
    for step, (*_k, g, _s) in enumerate(scored):
        if len(excluded) + len(g.nodes) > tolerance.float_share * total:
            break
        excluded += g.nodes
        path, reached, got = trial(excluded, f"step{step}")
        if tolerance.holds(reached):
            return path, list(excluded), got
    raise EngineError(
        f"INT8 cannot meet --int8-tolerance {tolerance}: all {total} layers in INT8 give {start.text()}; "
        f"keeping the {len(excluded)} most sensitive of {total} in float (float={tolerance.float_share:g} allows "
        f"no more) gives {reached.text()}: loosen --int8-tolerance (p99=, max=, float=) or build fp16"
    )
