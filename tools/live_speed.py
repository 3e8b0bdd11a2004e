"""Live fusion speed and memory on this machine: two cameras sending UDP MPEG-TS on 127.0.0.1 at the
target rate, fused with ``fuse_live`` for SECONDS, with the process's RSS sampled every second.

The cameras are replays: each stream is encoded once (MSRS frames from $LUTFUSE_DATA when present,
the IR padded to its camera's size, else synthetic gradients with noise), then a subprocess remuxes its
packets to UDP at their timestamps, looping. Replaying costs almost no CPU, so the fusing process
gets the machine, as it would beside real cameras.

    python tools/live_speed.py --model lut-fast-rig.onnx --backend onnxruntime --rate 30 --seconds 60
    python tools/live_speed.py --model lutfuse_deploy/pretrained/mini.safetensors --backend numba \
        --rig recipes/rigs/example-640x512-to-640x480.yaml --rate 60 --seconds 60

prints one JSON object: the live summary (fps, drops, latency p50/p95, time per stage), RSS samples in
MiB, the load average before and after, and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

LOOP_S = 5.0  # seconds of video encoded per camera, replayed in a loop


def frames(size: tuple[int, int], n: int, role: str) -> list[np.ndarray]:
    from PIL import Image

    from lutfuse_deploy.paths import data_root

    w, h = size
    folder = data_root() / "ivif" / "msrs_test" / role
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        if files:
            img = np.asarray(Image.open(files[i % len(files)]).convert("RGB"))
            canvas = np.zeros((h, w, 3), np.uint8)
            ch, cw = min(h, img.shape[0]), min(w, img.shape[1])
            canvas[:ch, :cw] = img[:ch, :cw]
        else:
            yy, xx = np.mgrid[0:h, 0:w]
            base = 127 + 100 * np.sin((xx + 5 * i) / 23.0) * np.cos(yy / 17.0)
            canvas = np.clip(base[..., None] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        out.append(canvas)
    return out


def encode(path: Path, size: tuple[int, int], rate: int, role: str) -> Path:
    import av

    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=rate, options={"preset": "veryfast", "g": str(rate)})
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i, img in enumerate(frames(size, int(LOOP_S * rate), role)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def replay(path: str, port: int, start_at: float) -> None:
    """Send ``path``'s packets to udp://127.0.0.1:PORT at their timestamps, looping until killed."""
    import av

    with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts",
                 options={"flush_packets": "1"}) as out:
        stream = None
        loop = 0
        while True:
            with av.open(path) as src:  # demuxed afresh each loop: muxing rescales packets in place
                template = src.streams.video[0]
                stream = stream or out.add_stream_from_template(template)
                tb = template.time_base
                span = round(LOOP_S / tb)
                first = None
                for p in src.demux(template):
                    if p.dts is None:
                        continue
                    first = p.pts if first is None else first
                    p.pts, p.dts = p.pts + loop * span, p.dts + loop * span
                    wait = start_at + float((p.pts - first) * tb) - time.time()
                    if wait > 0:
                        time.sleep(wait)
                    p.stream = stream
                    out.mux(p)
            loop += 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "replay":
        replay(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--rig", default=None, help="for a checkpoint on torch or numba (a graph carries its rig)")
    ap.add_argument("--ir-size", default="640x512")
    ap.add_argument("--vi-size", default="640x480")
    ap.add_argument("--rate", type=int, default=30, help="both cameras' frame rate")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--spin", action=argparse.BooleanOptionalAction, default=None,
                    help="ONNX Runtime threads busy-wait between ops (default: its own default)")
    args = ap.parse_args()

    from lutfuse_deploy.fuse.live import LiveOptions
    from lutfuse_deploy.fuse.live_run import fuse_live
    from lutfuse_deploy.runtime import create_runner

    options: dict[str, object] = {"threads": args.threads or len(os.sched_getaffinity(0))}
    if args.spin is not None:
        options["spin"] = args.spin
    if args.rig:
        if args.backend not in ("torch", "numba"):
            ap.error("--rig is for a checkpoint on torch or numba: a graph exported with --rig carries its rig")
        options["rig"] = args.rig
    runner = create_runner(args.model, args.backend, **options)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        streams = [encode(Path(tmp) / f"{role}.ts", _size(size), args.rate, role)
                   for role, size in (("ir", args.ir_size), ("vi", args.vi_size))]
        ports = [free_port(), free_port()]
        start_at = time.time() + 1.0
        senders = [subprocess.Popen([sys.executable, __file__, "replay", str(s), str(p), repr(start_at)])
                   for s, p in zip(streams, ports, strict=True)]
        rss: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                rss.append(round(rss_mib(), 1))

        threading.Thread(target=sample, daemon=True).start()
        try:
            summary = fuse_live(runner, *(f"udp://127.0.0.1:{p}" for p in ports), str(Path(tmp) / "out.mkv"),
                                LiveOptions(duration=args.seconds), progress=False)
        finally:
            done.set()
            for s in senders:
                s.kill()
                s.wait()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    print(json.dumps({"model": args.model, "backend": args.backend, "rate": args.rate, "summary": summary.to_dict(),
                      "rss_mib": {"first": rss[0] if rss else None, "max": max(rss, default=None),
                                  "last": rss[-1] if rss else None, "samples": len(rss),
                                  "every_10_s": rss[::10]},
                      "load_before": load_before, "load_after": os.getloadavg(), "cpu": cpu,
                      "cpus": len(os.sched_getaffinity(0))}, indent=2))


if __name__ == "__main__":
    main()
