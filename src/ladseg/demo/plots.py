"""The demo report's figures: training curves of every stage, the teacher's label-use gap over
iterations, and a few validation images with each model's prediction."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ladseg.engine.logging import read_metrics

if TYPE_CHECKING:
    from ladseg.demo.pipeline import DemoRecipe, SeedResult


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


def plot_label_gap(results: list[SeedResult], path: Path) -> None:
    """The teacher's label-use gap (mIoU with fixed codes minus with a zero channel) over iterations.

    The curve shows whether and when the teacher starts to read its label; it comes from the
    ``label_gap`` that every teacher validation logs.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        va = [r for r in read_metrics(result.run_dir / "teacher") if r["type"] == "val" and "label_gap" in r]
        if va:
            ax.plot(
                [r["iter"] for r in va], [r["label_gap"] for r in va], marker="o", label=f"seed {result.seed}"
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


def plot_predictions(
    result: SeedResult, recipe: DemoRecipe, profile: str, extra: list[str], path: Path, count: int = 4
) -> None:
    """A few validation images: image, ground truth, and each model's prediction side by side."""
    plt = _pyplot()

    from ladseg.data import colorize
    from ladseg.data.transforms import denormalize
    from ladseg.demo.pipeline import stage_config
    from ladseg.engine.builders import build_split
    from ladseg.engine.checkpoint import build_model_from_checkpoint
    from ladseg.methods import build_method

    models = [
        ("baseline", "baseline"),
        ("control", "control"),
        ("teacher (labels)", "teacher"),
        ("LAD student", "student"),
    ]
    if "self_distill" in recipe.stages:
        models.append(("self-distillation", "self_distill"))
    cfg = stage_config(recipe, "baseline", result.run_dir, result.seed, profile, extra)
    dataset = build_split(cfg, cfg.data.val_split, train=False)
    idx = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    samples = [dataset[i] for i in idx]
    batch = {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([torch.as_tensor(s["mask"]) for s in samples]),
    }
    preds = {}
    for title, stage in models:
        scfg = stage_config(recipe, stage, result.run_dir, result.seed, profile, extra)
        model, _ = build_model_from_checkpoint(result.run_dir / stage / "last.pth")
        model.eval()
        x = batch["image"]
        if stage == "teacher":
            method = build_method(scfg.method_name, scfg.method_params, model, model.num_classes)
            x = method.inference_input(batch)
        preds[title] = model.predict(x).argmax(1).numpy()
    cols = 2 + len(models)
    fig, axes = plt.subplots(count, cols, figsize=(2.2 * cols, 2.2 * count))
    axes = np.atleast_2d(axes)
    for r in range(count):
        panels = [
            ("image", denormalize(batch["image"][r], cfg.data.normalize)),
            ("ground truth", colorize(batch["mask"][r].numpy(), dataset.palette)),
        ]
        panels += [(t, colorize(preds[t][r], dataset.palette)) for t, _ in models]
        for c, (title, img) in enumerate(panels):
            axes[r, c].imshow(img)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
