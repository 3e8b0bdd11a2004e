"""Fusion as one pipeline: a source of IR/visible pairs, the runner, a sink for the fused images.

``plan`` (from ``fuse``'s paths to pairs and checked outputs), ``sources`` (folders, single pairs,
video files), ``cameras`` and ``live`` (live cameras, one decoder thread each, paired by capture
time when the runner asks), ``pairing`` (two frame streams into pairs), ``sinks`` (folders, video
files, frames, live recordings and streams), ``threads`` (read ahead, write behind), ``convert``
(images to runner batches and back), ``stats`` (timings in constant memory), ``pipeline`` (the loop
that joins them) and ``live_run`` (that loop on cameras). Which IR and visible sizes may pair is
the runner's ``check_pair_sizes``.
"""
