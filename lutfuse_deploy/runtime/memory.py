"""Peak memory of a fuse run, estimated before it starts, against the memory this machine can give.

An 8000x8000 pair needs ~20 GB in PyTorch: without a check the kernel's OOM killer ends the run
without a word. The estimate is linear in the pixels of the largest pair, with coefficients
measured per model kind and backend (docs/performance.md, "Memory", gives the command and table).
"""

from __future__ import annotations

from pathlib import Path

from lutfuse_deploy.errors import InputError

#: Measured peak resident memory of ``lutfuse-deploy fuse`` on one pair (``/usr/bin/time -v``,
#: 1 thread, x86-64 CPU) as (MiB at 0 pixels, MiB per megapixel): least squares over 0.25, 1, 2.25
#: and 4 MP (teacher: up to 2.25 MP), every residual under 75 MiB. Backends not listed
#: (OpenVINO, TensorRT) are not checked.
PEAK_MIB: dict[tuple[str, str], tuple[float, float]] = {
    ("lutfuse", "torch"): (358.0, 321.0),
    ("lutfuse", "onnxruntime"): (89.0, 249.0),
    ("mmdrfuse-student", "torch"): (330.0, 105.0),
    ("mmdrfuse-student", "onnxruntime"): (83.0, 81.0),
    ("mmdrfuse-teacher", "torch"): (370.0, 1946.0),
    ("mmdrfuse-teacher", "onnxruntime"): (172.0, 1674.0),
}
#: Room for what the fit does not see (allocator slack, other threads' buffers).
MARGIN = 1.15


def estimate_mib(kind: str, backend: str, width: int, height: int) -> float | None:
    """Estimated peak MiB for one ``width`` x ``height`` pair, or None where nothing was measured."""
    coef = PEAK_MIB.get((kind, backend))
    if coef is None:
        return None
    base, per_mp = coef
    return MARGIN * (base + per_mp * width * height / 1e6)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_mib() -> float | None:
    """What a new allocation can get: MemAvailable, capped by this cgroup's limit (containers, CI)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) / 1024
    except OSError:
        return None
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        room = (limit - used) / 2**20
        avail = room if avail is None else min(avail, room)
    return avail


def largest_image(paths: list[Path]) -> tuple[int, int] | None:
    """(width, height) of the image with most pixels, from the headers only (nothing decoded)."""
    from PIL import Image

    best: tuple[int, int] | None = None
    for p in paths:
        try:
            with Image.open(p) as img:
                size = img.size
        except Exception:  # unreadable files are reported per pair later, by the reader
            continue
        if best is None or size[0] * size[1] > best[0] * best[1]:
            best = size
    return best


def check_memory(kind: str, backend: str, device: str, size: tuple[int, int] | None,
                 available: float | None = None) -> None:
    """Refuse a run whose estimated peak exceeds the available memory, with one line saying so.

    CPU runs only: GPU memory is the device's (TensorRT profiles are checked when built).
    ``available``: MiB measured once before a run, so pairs checked during it are not compared with
    what the run itself already holds (the estimate counts the whole process).
    """
    if size is None or not str(device).startswith("cpu"):
        return
    need = estimate_mib(kind, backend, *size)
    have = available_mib() if available is None else available
    if need is None or have is None or need <= have:
        return
    raise InputError(
        f"a {size[0]}x{size[1]} pair needs about {need / 1024:.1f} GiB with {kind} on {backend}, "
        f"{have / 1024:.1f} GiB is available; use smaller images or more memory, or --no-memory-check "
        "to try anyway"
    )


def memory_device(backend: str, device: str) -> str:
    """The device whose memory a run uses: only torch runs elsewhere than the CPU here."""
    return device if backend == "torch" else ("cuda" if backend == "tensorrt" else "cpu")

