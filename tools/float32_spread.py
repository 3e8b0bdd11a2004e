"""How far apart equally exact float32 evaluations of the same network land, against float64 truth.

The parity rule bounds a graph by twice PyTorch float32's own distance to truth (``e_off``). On the
official LUT-Fuse weights a few real pairs are so ill-conditioned that this bound is narrower than
float32's own spread. This tool measures that spread: it exports ONNX Runtime-only experiment graphs
whose InstanceNorm statistics are exact (taken in float64, rounded once to float32) and which differ
only in the centring value subtracted before the statistics (mathematically irrelevant: the exact
statistics correct for it), then judges them and the shipped default graph with the parity rule.
It also prints the context map's own error (PyTorch float32 and the default graph, against float64).

    python tools/float32_spread.py CHECKPOINT [--pairs tno:03,tno:04,tno:23]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np


def centred_exact_norm(centring: str):  # noqa: ANN201 - returns an nn.Module class built lazily
    """A RobustInstanceNorm stand-in with float64 statistics and the given float32 centring value."""
    import torch

    from lutfuse_deploy.export.graph import RobustInstanceNorm, mean_hw

    class ExactStatsNorm(RobustInstanceNorm):  # the shipped norm's parameters, other statistics
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if centring == "exact mean":
                m = x.double().mean(dim=(2, 3), keepdim=True).float()
            elif centring == "every 8th row":
                m = mean_hw(x[:, :, ::8, :])
            else:
                m = mean_hw(x)
            d = x - m
            m2 = d.double().mean(dim=(2, 3), keepdim=True)
            var = ((d.double() - m2) ** 2).mean(dim=(2, 3), keepdim=True).float()
            m2 = m2.float()
            scale = self.weight / torch.sqrt(var + self.eps)
            return d * scale + (self.bias - m2 * scale)

    return ExactStatsNorm


def main() -> int:
    import torch

    from lutfuse_deploy.export import graph, parity
    from lutfuse_deploy.export.onnx import DEFAULT_OPSET, trace_graph
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.io.images import find_pairs, load_pair
    from lutfuse_deploy.models.lut import LutFuse
    from lutfuse_deploy.paths import data_root
    from lutfuse_deploy.runtime import create_runner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a LUT-Fuse checkpoint (the official one is where the spread shows)")
    ap.add_argument("--pairs", default="tno:03,tno:04,tno:23", help="SET:NAME,... pairs of data/ivif/SET")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model, _ = load_model(args.checkpoint)
    if not isinstance(model, LutFuse):
        print("error: float32_spread needs a LUT-Fuse checkpoint", file=sys.stderr)
        return 2
    model64: LutFuse = copy.deepcopy(model).double()
    items = []
    for spec in args.pairs.split(","):
        name, _, pair_name = spec.partition(":")
        folder = data_root() / "ivif" / name
        pair = next((p for p in find_pairs(folder / "ir", folder / "vi")[0] if p.name == pair_name), None)
        if pair is None:
            print(f"error: no pair {pair_name!r} in {folder}", file=sys.stderr)
            return 2
        ir, vi = load_pair(pair, vi_mode="RGB")
        items.append(parity.ParityInput(spec, ir[None, None].astype(np.float32),
                                        vi.transpose(2, 0, 1)[None].astype(np.float32)))
    truths = [parity.truth_of(model, item, model64) for item in items]

    variants = ["default graph", "exact mean", "two-level float32 mean", "every 8th row"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        shipped_norm = graph.RobustInstanceNorm
        for i, variant in enumerate(variants):
            path = Path(tmp) / f"v{i}.onnx"
            if i:
                graph.RobustInstanceNorm = centred_exact_norm(variant)  # type: ignore[misc]
            try:
                module = graph.graph_module(model, "gridsample", "float")
            finally:
                graph.RobustInstanceNorm = shipped_norm  # type: ignore[misc]
            trace_graph(module, path, "lutfuse", "float", DEFAULT_OPSET, None, 1)
            paths.append(path)
        print(f"{'pair':10s} {'e_off':>9s}  " + "  ".join(f"{v:>22s}" for v in variants))
        for item, truth in zip(items, truths):
            ratios = []
            for path in paths:
                runner = create_runner(str(path), "onnxruntime", threads=args.threads)
                row = parity.judge(runner.infer(item.ir, item.vi), truth)
                ratios.append(f"{row['max_abs'] / row['bound']:>21.2f}x")
            print(f"{item.name:10s} {truth.e_off:9.2e}  " + "  ".join(ratios), flush=True)

    print("\ncontext map (the sigmoid output) against float64:")
    context_graph = graph.ContextGraph(model.context).eval()
    for item in items:
        x = torch.from_numpy(np.concatenate([item.vi, item.ir], axis=1))
        with torch.inference_mode():
            truth64 = model64.context(x.double())
            torch32 = model.context(x).double()
            ours32 = context_graph(x).double()
        print(f"{item.name:10s} PyTorch float32 {float((torch32 - truth64).abs().max()):.2e}   "
              f"default graph's ops in PyTorch float32 {float((ours32 - truth64).abs().max()):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
