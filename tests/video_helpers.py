"""Small videos made on the spot (PyAV), and the ways tests break them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frames(n: int, w: int = 64, h: int = 48, seed: int = 0, gray: bool = False) -> list[np.ndarray]:
    """Moving smooth gradients plus noise: content a codec keeps recognisable, different per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        base = 127.5 + 90.0 * np.sin((xx + 4 * i) / 9.0 + seed) * np.cos(yy / 7.0)
        rgb = np.stack([base, base * 0.8 + 20, 255 - base], -1) + rng.normal(0, 6, (h, w, 3))
        img = np.clip(rgb, 0, 255).astype(np.uint8)
        out.append(img[..., 0] if gray else img)
    return out


def make_video(path: Path, n: int, w: int = 64, h: int = 48, rate: int = 10, seed: int = 0,
               encoder: str = "libx264") -> Path:
    import av

    pix = "yuv420p" if encoder in ("libx264", "mpeg4") else "bgr0"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix
        for img in frames(n, w, h, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], object]:
    """Every frame as RGB, and the stream's average frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.average_rate


def audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def truncated(src: Path, dst: Path, keep: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def scrambled(src: Path, dst: Path) -> Path:
    """Every fifth byte garbled after the first third (the container header survives, the frames do not)."""
    data = bytearray(src.read_bytes())
    for i in range(len(data) // 3, len(data) - 100, 5):
        data[i] = (data[i] * 31 + 7) & 255
    dst.write_bytes(bytes(data))
    return dst


def make_gray16_video(path: Path, n: int, w: int = 64, h: int = 48) -> tuple[Path, list[np.ndarray]]:
    """A lossless (FFV1) gray16le stream like a radiometric thermal camera's; returns its frames too."""
    import av

    raw = [(frame[..., 0].astype(np.uint16) * 97 + 1500 * i).astype(np.uint16)
           for i, frame in enumerate(frames(n, w, h, seed=7))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "gray16le"
        for img in raw:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="gray16le")))
        container.mux(stream.encode())
    return path, raw
