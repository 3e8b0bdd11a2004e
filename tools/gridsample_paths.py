"""Time ONNX Runtime's CPU GridSample alone for each padding mode and align_corners setting, with
the export's atlas shape (4 x 256 x 256) and a 640x480 grid: why the lowering samples with
``padding_mode=zeros, align_corners=0`` (ONNX Runtime's fast path; the result is the same, as no tap
outside the atlas has a non-zero weight).

    python tools/gridsample_paths.py [--threads 2] [--size 640x480] [--runs 15]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def gridsample_model(channels: int, side: int, padding: str, align_corners: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    atlas = numpy_helper.from_array(np.random.default_rng(0).random((1, channels, side, side), np.float32), "atlas")
    node = helper.make_node("GridSample", ["atlas", "grid"], ["out"], mode="bilinear", padding_mode=padding,
                            align_corners=align_corners)
    graph = helper.make_graph([node], "gridsample", [helper.make_tensor_value_info("grid", TensorProto.FLOAT,
                                                                                   [1, "H", "W", 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [atlas])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def main() -> int:
    import onnxruntime as ort

    from lutfuse_deploy.export.ort_options import session_options

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the grid")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    grid = (np.random.default_rng(1).random((1, h, w, 2), np.float32) * 2 - 1) * 0.999
    settings = [(p, a) for p in ("border", "zeros") for a in (1, 0)]
    sessions = {s: ort.InferenceSession(gridsample_model(4, 256, *s), session_options(args.threads, spin=False),
                                        providers=["CPUExecutionProvider"]) for s in settings}
    times: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for _ in range(3):
        for sess in sessions.values():
            sess.run(None, {"grid": grid})
    for _ in range(args.runs):  # interleaved, so machine noise hits every setting alike
        for s, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"grid": grid})
            times[s].append((time.perf_counter() - t0) * 1000)
    base = float(np.median(times[("border", 1)]))
    print(f"GridSample, 4 x 256 x 256 atlas, {w}x{h} grid, {args.threads} threads, {args.runs} interleaved runs")
    for (padding, align), t in times.items():
        med = float(np.median(t))
        print(f"  padding_mode={padding:6s} align_corners={align}: median {med:6.2f} ms  min {min(t):6.2f} ms"
              f"  {base / med:4.2f}x border/align_corners=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
