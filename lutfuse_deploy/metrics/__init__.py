"""Fusion quality metrics (pure NumPy/SciPy) with the conventions papers use; see ``fusion``.

``evaluate`` (folder evaluation and writers) is not imported here so that ``fusion`` stays free of
any lutfuse_deploy import.
"""

from lutfuse_deploy.metrics.fusion import (
    METRIC_NAMES,
    average_gradient,
    compute_all,
    correlation_coefficient,
    entropy,
    mutual_information,
    psnr,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_gray,
    vif,
)

__all__ = [
    "METRIC_NAMES",
    "average_gradient",
    "compute_all",
    "correlation_coefficient",
    "entropy",
    "mutual_information",
    "psnr",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "to_gray",
    "vif",
]
