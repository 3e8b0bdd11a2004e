"""Fusion as one pipeline: a source of IR/visible pairs, the runner, a sink for the fused images.

``sources`` (folders, single pairs, video files), ``pairing`` (two frame streams into pairs),
``sinks`` (folders, video files, frames), ``threads`` (read ahead, write behind), ``convert``
(images to runner batches and back) and ``pipeline`` (the loop that joins them).
"""
