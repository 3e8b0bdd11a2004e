"""Live cameras on 127.0.0.1 for tests: a PyAV sender of UDP MPEG-TS whose frames carry their index.

Run as a script (a subprocess the test can kill): ``python live_helpers.py PORT RATE WxH SECONDS
START_AT [CHANGE_AT WxH]`` sends frame i at START_AT + i / RATE (wall clock, so two senders share one
schedule) with pts i in 1/RATE, a key frame every second, for SECONDS at most. Each frame shows its
index as 16 black or white 8x8 blocks (two rows of eight, top left), which survive the encoder.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BITS, BLOCK = 16, 8


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def index_frame(i: int, w: int, h: int) -> np.ndarray:
    """A gray gradient with frame ``i``'s bits in the top-left blocks (RGB)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (64 + (xx * 3 + yy * 2 + i * 5) % 128).astype(np.uint8)
    for b in range(BITS):
        y, x = (b // 8) * BLOCK, (b % 8) * BLOCK
        img[y:y + BLOCK, x:x + BLOCK] = 255 if (i >> b) & 1 else 0
    return np.repeat(img[..., None], 3, axis=2)


def read_index(image: np.ndarray) -> int:
    """The index ``index_frame`` wrote (gray or RGB image)."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    n = 0
    for b in range(BITS):
        y, x = (b // 8) * BLOCK, (b % 8) * BLOCK
        if gray[y + 2:y + BLOCK - 2, x + 2:x + BLOCK - 2].mean() > 128:
            n |= 1 << b
    return n


def send(port: int, rate: int, size: tuple[int, int], seconds: float, start_at: float,
         change_at: int | None = None, new_size: tuple[int, int] | None = None) -> None:
    import av

    def open_stream(w: int, h: int) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
        # flush each frame as it is muxed: otherwise its tail waits in a 1316-byte packet for the next frame
        container = av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts",
                            options={"flush_packets": "1"})
        stream = container.add_stream("libx264", rate=rate,
                                      options={"preset": "ultrafast", "tune": "zerolatency", "g": str(rate)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        return container, stream

    w, h = size
    container, stream = open_stream(w, h)
    for i in range(int(seconds * rate)):
        if change_at is not None and new_size is not None and i == change_at:
            container.close()
            (w, h) = new_size
            container, stream = open_stream(w, h)
        wait = start_at + i / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        frame = av.VideoFrame.from_ndarray(index_frame(i, w, h), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    container.close()


def start_sender(port: int, rate: int, size: str, seconds: float, start_at: float,
                 change: tuple[int, str] | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(Path(__file__)), str(port), str(rate), size, str(seconds), repr(start_at)]
    if change:
        args += [str(change[0]), change[1]]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def receive(url: str, seconds: float) -> None:
    """Print one line per decoded frame (``WxH``) from ``url`` for at most ``seconds``. rtsp:// listens
    (FFmpeg's own RTSP server side, ``rtsp_flags=listen``) for a client that pushes to it; rtp:// and
    udp:// read what is sent there. A subprocess: FFmpeg's network waits then never share a process
    (and its logging lock) with the run they talk to."""
    import av

    deadline = time.monotonic() + seconds
    options = {"rtsp_flags": "listen", "listen_timeout": str(int(seconds))} if url.startswith("rtsp") else {}
    try:
        with av.open(url, options=options, timeout=(seconds, 2.0)) as c:
            for f in c.decode(video=0):
                print(f"{f.width}x{f.height}", flush=True)
                if time.monotonic() > deadline:
                    break
    except (av.error.ExitError, av.error.EOFError):
        pass  # the read timeout after the sender stopped, or the end of the stream


def start_receiver(url: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(Path(__file__)), "receive", url, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _size(text: str) -> tuple[int, int]:
    w, h = text.split("x")
    return int(w), int(h)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "receive":
        receive(a[1], float(a[2]))
        sys.exit(0)
    send(int(a[0]), int(a[1]), _size(a[2]), float(a[3]), float(a[4]),
         int(a[5]) if len(a) > 5 else None, _size(a[6]) if len(a) > 6 else None)
