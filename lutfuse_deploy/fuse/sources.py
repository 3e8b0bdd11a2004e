"""What fusion reads from: folders or single pairs of images, and pairs of video files."""

from __future__ import annotations

from fractions import Fraction

from lutfuse_deploy.errors import InputError
from lutfuse_deploy.io.video import VideoInfo


def check_streams(ir: VideoInfo, vi: VideoInfo, resample_to: str | None) -> Fraction:
    """Refuse what cannot be paired before decoding anything; returns the output frame rate."""
    if (ir.width, ir.height) != (vi.width, vi.height):
        raise InputError(f"{ir.path.name} is {ir.size} but {vi.path.name} is {vi.size}: "
                         "the streams must have the same frame size")
    if resample_to is None:
        # containers round rates differently (30000/1001 vs 2997/100): within 0.1 % is the same rate
        if ir.rate and vi.rate and abs(ir.rate - vi.rate) > ir.rate / 1000:
            raise InputError(f"{ir.path.name} is {float(ir.rate):.6g} fps and {vi.path.name} {float(vi.rate):.6g} fps: "
                             "pass --resample-to ir (or vi) to pair frames by nearest timestamp")
    elif resample_to not in ("ir", "vi"):
        raise InputError(f"--resample-to {resample_to!r}: choose ir or vi")
    lead = vi if resample_to == "vi" else ir
    other = ir if resample_to == "vi" else vi
    for v in (lead, other) if resample_to else ():
        if v.rate is None:
            raise InputError(f"{v.path.name}: the container gives no frame rate to pair by time")
    rate = lead.rate or other.rate
    if rate is None:
        raise InputError(f"{lead.path.name}: the container gives no frame rate")
    return rate
