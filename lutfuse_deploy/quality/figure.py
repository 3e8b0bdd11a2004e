"""``docs/quality.png``: the first pair of each set and the noisy-sky crop, one column per model."""

from __future__ import annotations

from pathlib import Path

from lutfuse_deploy.quality.results import CropResult, SetResult


def write_figure(path: Path, results: list[SetResult], columns: list[str], crop: CropResult | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lutfuse_deploy.io.files import atomic_path

    panels = [(r.name, r.figure) for r in results if r.figure]
    if crop is not None:
        panels.append((crop.name, crop.images))
    fig, axes = plt.subplots(
        len(panels), len(columns), figsize=(2.2 * len(columns), 1.9 * len(panels)), squeeze=False
    )
    for r, (label, images) in enumerate(panels):
        for c, col in enumerate(columns):
            ax = axes[r][c]
            img = images[col]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if crop is not None and images is crop.images and col in crop.noise:
                ax.set_xlabel(f"noise {crop.noise[col]:.2f}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
