"""Raw camera frames for a rig from registered pairs: what the rig's two cameras would have given.

The IR of each registered pair is resampled into a frame of the rig's thermal size through the rig's
homography (raw IR pixel -> visible pixel; OpenCV's bilinear warp, edges replicated), the visible image is
kept as it is. Used to calibrate and check INT8 rig graphs (docs/rigs.md) on real content when no raw
frames of that rig exist.

    python tools/rig_raw_frames.py --rig recipes/rigs/example-640x512-to-640x480.yaml \
        --pairs calibration/msrs.txt --out runs/rig-raw
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import cv2
    from PIL import Image

    from lutfuse_deploy.engines.calibration import read_list
    from lutfuse_deploy.rig.file import load_rig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rig", type=Path, required=True, help="rig file (its ir_size and homography are used)")
    ap.add_argument("--pairs", type=Path, required=True, help="a calibration list (calibration/*.txt format)")
    ap.add_argument("--out", type=Path, required=True, help="folder to write ir/ and vi/ into (must not exist)")
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} exists")
    rig = load_rig(args.rig)
    h_ir_to_vi = np.asarray(rig.homography, dtype=np.float64)
    w, h = rig.ir_size
    pairs = read_list(args.pairs)
    (args.out / "ir").mkdir(parents=True)
    (args.out / "vi").mkdir()
    for i, (ir_path, vi_path) in enumerate(pairs):
        ir = np.asarray(Image.open(ir_path).convert("L"))
        raw = cv2.warpPerspective(ir, h_ir_to_vi, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        Image.fromarray(raw).save(args.out / "ir" / f"{i:03d}.png")
        Image.open(vi_path).convert("RGB").save(args.out / "vi" / f"{i:03d}.png")
    print(f"wrote {len(pairs)} raw pairs (IR {w}x{h}) to {args.out}")


if __name__ == "__main__":
    main()
