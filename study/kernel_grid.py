"""The picture a study logs first: what each blur kernel does to a sample image, level by level.

Logged as an artifact of the study's parent run (`kernels/`), so the MLflow UI shows what
"level n" means for every kernel before any trial has ended.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def kernel_grid_png(images_by_dataset: dict, path: Path, levels: int = 4) -> Path:
    """A PNG grid: one row per kernel, one column per level, for one sample image per dataset."""
    import torch

    from trainer.blur import KERNELS, blur, max_level

    rows = [(name, kernel) for name in images_by_dataset for kernel in KERNELS]
    fig, axes = plt.subplots(len(rows), levels, figsize=(1.6 * levels, 1.6 * len(rows)), squeeze=False)
    for row, (name, kernel) in enumerate(rows):
        image = torch.as_tensor(images_by_dataset[name], dtype=torch.float32)[None]
        top = max_level(*image.shape[-2:])
        for column in range(levels):
            axis = axes[row][column]
            axis.axis("off")
            level = column + 1
            if level > top:
                continue
            shown = blur(image, kernel, level)[0].permute(1, 2, 0).numpy()
            shown = (shown - shown.min()) / max(1e-8, shown.max() - shown.min())
            axis.imshow(shown.squeeze(), cmap="gray" if shown.shape[-1] == 1 else None)
            axis.set_title(f"{name} {kernel} L{level}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
