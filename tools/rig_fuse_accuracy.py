"""How exact is fusing through a rig? Measured on the unregistered pairs of ``rig/roadscene_raw``.

For every pair, with its ground-truth homography as the rig:

* ``fuse --rig`` (the PyTorch path: the float32 warp inside ``RigGraph``) against fusing the pair after an
  exact float64 warp (scipy's bilinear ``map_coordinates`` at H^-1, the same model in float32): mean and
  max 8-bit difference where the thermal camera sees;
* the exported rig graph (``export --rig``, ONNX Runtime) against ``fuse --rig``: max 8-bit difference.

    python tools/rig_fuse_accuracy.py [--model lutfuse_deploy/pretrained/lutfuse.safetensors] [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lutfuse_deploy.paths import data_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "lutfuse_deploy/pretrained/lutfuse.safetensors"))
    parser.add_argument("--pairs", type=int, default=0, help="only the first N pairs (0: all)")
    parser.add_argument("--no-graph", action="store_true", help="skip the exported-graph comparison")
    parser.add_argument("--json", default=None, help="write the per-pair rows here")
    args = parser.parse_args()

    import torch

    from lutfuse_deploy.export.onnx import torch_to_onnx
    from lutfuse_deploy.fuse.convert import to_8bit
    from lutfuse_deploy.io.checkpoints import load_model
    from lutfuse_deploy.io.images import read_ir, read_vi
    from lutfuse_deploy.rig.file import rig_from_dict, save_rig
    from lutfuse_deploy.rig.overlay import crop_visible, seen_mask, warp_to_visible
    from lutfuse_deploy.runtime import create_runner
    from lutfuse_deploy.runtime.base import vi_channels

    folder = data_root() / "rig" / "roadscene_raw"
    truth = json.loads((folder / "homographies.json").read_text())
    names = sorted(truth)[: args.pairs or None]
    model, meta = load_model(args.model)
    kind = meta["kind"]
    rows = []
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            entry = truth[name]
            rig = rig_from_dict({"ir_size": entry["ir_wh"], "vi_size": entry["vi_wh"],
                                 "homography": entry["H_ir_to_vi"]})
            rig_path = save_rig(rig, Path(tmp) / f"{name}.yaml")
            ir = read_ir(next((folder / "ir").glob(f"{name}.*")))
            vi = read_vi(next((folder / "vi").glob(f"{name}.*")), "RGB" if vi_channels(kind) == 3 else "L")
            vi_b = (vi.transpose(2, 0, 1) if vi.ndim == 3 else vi[None])[None].astype(np.float32)
            ir_b = ir[None, None].astype(np.float32)
            with create_runner(args.model, "torch", threads=2, rig=rig_path) as runner:
                via_rig = to_8bit(runner.infer(ir_b, vi_b)[0], kind, "clip").astype(np.int16)
            warped = warp_to_visible(ir, rig).astype(np.float32)
            vi_c = (crop_visible(vi, rig).transpose(2, 0, 1) if vi.ndim == 3 else crop_visible(vi, rig)[None])
            with torch.inference_mode():
                exact = model(torch.from_numpy(warped)[None, None],
                              torch.from_numpy(np.ascontiguousarray(vi_c[None], dtype=np.float32))).numpy()
            exact8 = to_8bit(exact[0], kind, "clip").astype(np.int16)
            seen = seen_mask(rig)
            diff = np.abs(via_rig - exact8)
            diff = diff if diff.ndim == 2 else diff.max(axis=-1)
            row = {"pair": name, "vi": entry["vi_wh"], "mean_lsb_seen": float(diff[seen].mean()),
                   "max_lsb_seen": int(diff[seen].max()), "seen_share": float(seen.mean())}
            if not args.no_graph:
                onnx = torch_to_onnx(args.model, Path(tmp) / f"{name}.onnx", rig=rig_path)
                with create_runner(onnx, "onnxruntime", threads=2) as graph:
                    graph8 = to_8bit(graph.infer(ir_b, vi_b)[0], kind, "clip").astype(np.int16)
                row["graph_vs_fuse_max_lsb"] = int(np.abs(graph8 - via_rig).max())
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    means = [r["mean_lsb_seen"] for r in rows]
    print(f"{len(rows)} pairs: fuse --rig vs exact float64 warp, mean |diff| where the IR sees: "
          f"median {np.median(means):.4f} LSB, worst {max(means):.4f} LSB; max {max(r['max_lsb_seen'] for r in rows)} LSB")
    if not args.no_graph:
        print(f"exported rig graph vs fuse --rig: max {max(r['graph_vs_fuse_max_lsb'] for r in rows)} LSB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
