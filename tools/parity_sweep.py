"""Judge an exported LUT-Fuse/MMDRFuse graph against float64 truth on real pairs (the export's own
parity rule, ``export.parity.PARITY_RULE``), many pairs at a time: the sweep behind the accuracy table
in docs/performance.md. Prints one line per pair and a summary; exit status 1 if any pair fails.

    python tools/parity_sweep.py CHECKPOINT GRAPH.onnx [--sets tno:25,msrs_test:6] [--level extended]
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np


def main() -> int:
    from lutfuse_deploy.export import parity
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.io.images import find_pairs, load_pair
    from lutfuse_deploy.paths import data_root
    from lutfuse_deploy.runtime import create_runner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("graph")
    ap.add_argument("--sets", default="tno:25,msrs_test:6,roadscene:6,llvip_test:2",
                    help="SET:N,... first N pairs of each data/ivif/SET")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model, meta = load_model(args.checkpoint)
    model64 = copy.deepcopy(model).double()
    runner = create_runner(args.graph, "onnxruntime", threads=args.threads)
    rgb = meta["kind"] == "lutfuse"
    failed, worst, worst_lsb, count = [], 0.0, 0, 0
    for spec in args.sets.split(","):
        name, _, n = spec.partition(":")
        folder = data_root() / "ivif" / name
        pairs, _ = find_pairs(folder / "ir", folder / "vi")
        for pair in pairs[: int(n or len(pairs))]:
            ir, vi = load_pair(pair, vi_mode="RGB" if rgb else "L")
            vi_nchw = vi.transpose(2, 0, 1)[None] if rgb else vi[None, None]
            item = parity.ParityInput(f"{name}/{pair.name}", ir[None, None].astype(np.float32),
                                      vi_nchw.astype(np.float32))
            row = parity.judge(runner.infer(item.ir, item.vi), parity.truth_of(model, item, model64))
            count += 1
            worst, worst_lsb = max(worst, row["max_abs"] / row["bound"]), max(worst_lsb, row["max_lsb"])
            print(f"{item.name:28s} e_off {row['e_off']:.2e}  graph {row['max_abs']:.2e}  bound {row['bound']:.2e}"
                  f"  8-bit {row['max_lsb']} LSB  {'ok' if row['passed'] else 'FAIL'}", flush=True)
            if not row["passed"]:
                failed.append(item.name)
    print(f"{count} pairs: {count - len(failed)} pass, worst error {worst:.2f}x its bound, worst 8-bit "
          f"difference {worst_lsb} LSB" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
