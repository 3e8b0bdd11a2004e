"""CPU time per pair of each stage of folder fusion: reading, the model, writing (PNG at zlib 6 and 1).

Thread CPU time (``time.thread_time``) does not grow when other processes share the cores, so on a
busy machine it still says whether reading and writing can hide behind the model: with a core to
spare, the overlapped pipeline's wall time per pair is the slowest stage's, not their sum. ONNX
Runtime with one thread runs the model on the calling thread, so its CPU time is all counted.

    python tools/fuse_stage_costs.py --model fast.onnx --data ../shared/data/ivif/msrs_test [--pairs 20]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lutfuse_deploy.fuse.convert import prepare, to_8bit
from lutfuse_deploy.io.images import find_pairs, read_pair
from lutfuse_deploy.runtime import create_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported LUT-Fuse .onnx graph")
    parser.add_argument("--data", type=Path, required=True, help="a folder with ir/ and vi/")
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    pairs = find_pairs(args.data / "ir", args.data / "vi")[0][: args.pairs]
    cost: dict[str, list[float]] = {"read": [], "model": [], "write zlib 6": [], "write zlib 1": []}
    with create_runner(args.model, "onnxruntime", threads=1) as runner:
        runner.infer(*prepare(*_read(pairs[0]), runner.io))  # warm-up
        for pair in pairs:
            t = time.thread_time()
            ir, vi = _read(pair)
            cost["read"].append(time.thread_time() - t)
            t = time.thread_time()
            fused = runner.infer(*prepare(ir, vi, runner.io))[0]
            cost["model"].append(time.thread_time() - t)
            for level in (6, 1):
                t = time.thread_time()
                Image.fromarray(to_8bit(fused, runner.kind)).save(io.BytesIO(), format="PNG", compress_level=level)
                cost[f"write zlib {level}"].append(time.thread_time() - t)
    print(f"{len(pairs)} pairs of {args.data}, {args.model.name}, CPU ms per pair (median):")
    for stage, seconds in cost.items():
        print(f"  {stage:13s} {np.median(seconds) * 1e3:7.1f}")


def _read(pair):  # noqa: ANN001, ANN202
    images = read_pair(pair, check_swap=True)
    return images.ir, images.vi


if __name__ == "__main__":
    main()
