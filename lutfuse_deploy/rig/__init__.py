"""Camera rigs: two unregistered cameras (thermal + visible) and the homography between them.

A rig file says how the thermal camera's pixels map onto the visible camera's; every graph, engine and
``fuse`` run that takes raw frames of the two cameras reads it (``lutfuse_deploy.rig.file``). The other
modules make one: ``points`` fits it to clicked point pairs, ``refine`` improves it from image content,
``picker`` serves the point-picking page, ``overlay`` draws what a calibration looks like.
"""

from lutfuse_deploy.rig.file import Rig, load_rig, save_rig

__all__ = ["Rig", "load_rig", "save_rig"]
