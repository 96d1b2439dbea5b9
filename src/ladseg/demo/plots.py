"""The demo report's figures: training curves of every stage, the teacher's label-use gap over
iterations, and a few validation images with each model's prediction.

Drawing only: the curves come from the stages' logs, the predictions from
:func:`ladseg.demo.pipeline.predict_samples` (which runs the models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ladseg.demo.recipe import SeedResult
from ladseg.engine.logging import read_metrics


@dataclass
class PredictionPanels:
    """What the predictions figure shows, as H x W x 3 RGB arrays: one row per image.

    ``predictions`` maps a model's title to its coloured prediction of each image, in column order.
    """

    images: list[np.ndarray]
    truth: list[np.ndarray]
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(results: list[SeedResult], stages: tuple[str, ...], path: Path) -> None:
    """Training loss and validation mIoU of every stage of the first seed."""
    plt = _pyplot()
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4))
    run_dir = results[0].run_dir
    for stage in stages:
        recs = read_metrics(run_dir / stage)
        tr = [r for r in recs if r["type"] == "train"]
        va = [r for r in recs if r["type"] == "val"]
        if tr:
            ax_loss.plot([r["iter"] for r in tr], [r["loss"] for r in tr], label=stage)
        if va:
            ax_miou.plot([r["iter"] for r in va], [r["mIoU"] for r in va], marker="o", label=stage)
    ax_loss.set(
        title=f"training loss (seed {results[0].seed})", xlabel="iteration", ylabel="loss", yscale="log"
    )
    ax_miou.set(
        title="validation mIoU (%)", xlabel="iteration (student/control: after the baseline)", ylabel="mIoU"
    )
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_label_gap(results: list[SeedResult], teachers: list[str], path: Path) -> None:
    """Each teacher stage's label-use gap (mIoU with fixed codes minus with a zero channel) over iterations.

    The curve shows whether and when the teacher starts to read its label; it comes from the
    ``label_gap`` that every teacher validation logs.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for stage in teachers:
        for result in results:
            va = [r for r in read_metrics(result.run_dir / stage) if r["type"] == "val" and "label_gap" in r]
            if va:
                ax.plot(
                    [r["iter"] for r in va],
                    [r["label_gap"] for r in va],
                    marker="o",
                    label=f"{stage}, seed {result.seed}",
                )
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(
        title="teacher: mIoU with its label − with a zero channel",
        xlabel="teacher iteration",
        ylabel="mIoU gap",
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictions(panels: PredictionPanels, path: Path) -> None:
    """A few validation images: image, ground truth, and each model's prediction side by side."""
    plt = _pyplot()
    count = len(panels.images)
    cols = 2 + len(panels.predictions)
    fig, axes = plt.subplots(count, cols, figsize=(2.2 * cols, 2.2 * count))
    axes = np.atleast_2d(axes)
    for r in range(count):
        row = [("image", panels.images[r]), ("ground truth", panels.truth[r])]
        row += [(title, images[r]) for title, images in panels.predictions.items()]
        for c, (title, img) in enumerate(row):
            axes[r, c].imshow(img)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
