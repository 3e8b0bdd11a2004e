"""Fusion as one pipeline: a source of IR/visible pairs, the runner, a sink for the fused images.

``plan`` (from ``fuse``'s paths to pairs and checked outputs), ``sources`` (folders, single pairs,
video files), ``pairing`` (two frame streams into pairs), ``sinks`` (folders, video files, frames),
``threads`` (read ahead, write behind), ``convert`` (images to runner batches and back) and
``pipeline`` (the loop that joins them). A new input (a live camera) is a ``Source``, a new output
(a stream) a ``Sink``; which IR and visible sizes may pair is the runner's ``check_pair_sizes``.
"""
