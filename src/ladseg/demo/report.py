"""The demo's report folder: ``report.md`` / ``report.json`` (the table), ``curves.png``
(training loss and validation mIoU of every stage) and ``predictions.png`` (a few validation
images: image, ground truth, each model's prediction)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ladseg.engine.logging import read_metrics

if TYPE_CHECKING:
    from ladseg.demo.pipeline import DemoRecipe, SeedResult

GAIN = ("LAD student", "control")  # the gain the demo reports: LAD student minus control
LABEL_USE = ("teacher (with labels)", "teacher (no labels)")  # how much the teacher reads its label
LABEL_AWARE_MIOU = 1.0  # below this gap the teacher is reported as not using its label channel


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


def _gap(results: list[SeedResult], row: str, minus: str) -> dict[str, Any]:
    """mIoU of ``row`` minus that of ``minus`` (points), per seed and as mean / std / standard error."""
    per_seed = [(r.metrics[row].miou - r.metrics[minus].miou) * 100 for r in results]
    mean, std = _mean_std(per_seed)
    stderr = std / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    return {"mean": mean, "std": std, "stderr": stderr, "per_seed": per_seed}


def noise_verdict(gap: dict[str, Any]) -> str:
    """Whether a paired gain stands out of the seed-to-seed noise (more than 2 standard errors from zero)."""
    se = gap["stderr"]
    if math.isnan(se):
        return "One seed: the seed-to-seed spread is unknown (run --seeds 3 before reading a gain)."
    if abs(gap["mean"]) > 2 * se:
        kind = "gain" if gap["mean"] > 0 else "loss"
        return f"More than 2 standard errors (SE {se:.2f}) from zero: a {kind} that stands out of seed-to-seed noise."
    return f"Within 2 standard errors (SE {se:.2f}) of zero: not distinguishable from seed-to-seed noise."


def summarize(results: list[SeedResult]) -> dict[str, Any]:
    """mIoU and per-class IoU (percent) of every row, per seed and as mean / std over seeds."""
    rows = list(results[0].metrics)
    names = results[0].class_names
    summary: dict[str, Any] = {"seeds": [r.seed for r in results], "class_names": names, "rows": {}}
    for row in rows:
        mious = [r.metrics[row].miou * 100 for r in results]
        ious = np.array([(r.metrics[row].iou * 100).tolist() for r in results], dtype=float)
        with np.errstate(invalid="ignore"):
            per_class = np.nanmean(ious, axis=0) if not np.isnan(ious).all() else ious[0]
        mean, std = _mean_std(mious)
        summary["rows"][row] = {
            "mIoU": mean, "mIoU_std": std, "mIoU_per_seed": mious,
            "IoU": dict(zip(names, [None if math.isnan(v) else float(v) for v in per_class], strict=True)),
        }  # fmt: skip
    summary["gain_vs_control"] = _gap(results, *GAIN)
    summary["gain_vs_baseline"] = _gap(results, GAIN[0], "baseline")
    if all(row in results[0].metrics for row in LABEL_USE):
        summary["label_use"] = _gap(results, *LABEL_USE)
    summary["stage_seconds"] = {k: statistics.fmean(r.seconds[k] for r in results) for k in results[0].seconds}
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    n = len(summary["seeds"])
    names = summary["class_names"]
    head = ["model", "mIoU" + (f" (mean ± std, {n} seeds)" if n > 1 else ""), *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, r in summary["rows"].items():
        cells = [row, _fmt(r["mIoU"], r["mIoU_std"], n)]
        cells += ["-" if r["IoU"][c] is None else f"{r['IoU'][c]:.1f}" for c in names]
        lines.append("| " + " | ".join(cells) + " |")
    g, b = summary["gain_vs_control"], summary["gain_vs_baseline"]
    lines.append("")
    lines.append(f"**LAD student − control: {g['mean']:+.2f} mIoU**" + (f" (± {g['std']:.2f}; per seed {', '.join(f'{d:+.2f}' for d in g['per_seed'])})" if n > 1 else ""))
    lines.append(noise_verdict(g))
    lines.append(f"LAD student − baseline: {b['mean']:+.2f} mIoU (includes the extra fine-tuning iterations)")
    use = summary.get("label_use")
    if use is not None:
        lines.append(f"Teacher with − without its label channel: {use['mean']:+.2f} mIoU")
        if use["mean"] < LABEL_AWARE_MIOU:
            lines.append(
                "The teacher barely uses its label channel, so the student's gain over the control is that of "
                "distillation from a same-size teacher, not of label assistance."
            )
    return "\n".join(lines)


def plot_curves(results: list[SeedResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4))
    run_dir = results[0].run_dir
    for stage in ("baseline", "teacher", "student", "control"):
        recs = read_metrics(run_dir / stage)
        tr = [r for r in recs if r["type"] == "train"]
        va = [r for r in recs if r["type"] == "val"]
        if tr:
            ax_loss.plot([r["iter"] for r in tr], [r["loss"] for r in tr], label=stage)
        if va:
            ax_miou.plot([r["iter"] for r in va], [r["mIoU"] for r in va], marker="o", label=stage)
    ax_loss.set(title=f"training loss (seed {results[0].seed})", xlabel="iteration", ylabel="loss", yscale="log")
    ax_miou.set(title="validation mIoU (%)", xlabel="iteration (student/control: after the baseline)", ylabel="mIoU")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictions(result: SeedResult, recipe: DemoRecipe, profile: str, extra: list[str], path: Path, count: int = 4) -> None:
    """A few validation images: image, ground truth, and each model's prediction side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ladseg.data import colorize
    from ladseg.data.transforms import denormalize
    from ladseg.demo.pipeline import stage_config
    from ladseg.engine.builders import build_split
    from ladseg.engine.checkpoint import build_model_from_checkpoint
    from ladseg.methods import build_method

    models = [("baseline", "baseline"), ("control", "control"), ("teacher (labels)", "teacher"), ("LAD student", "student")]
    cfg = stage_config(recipe, "baseline", result.run_dir, result.seed, profile, extra)
    dataset = build_split(cfg, cfg.data.val_split, train=False)
    idx = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    samples = [dataset[i] for i in idx]
    batch = {"image": torch.stack([s["image"] for s in samples]), "mask": torch.stack([torch.as_tensor(s["mask"]) for s in samples])}
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
        panels = [("image", denormalize(batch["image"][r], cfg.data.normalize)),
                  ("ground truth", colorize(batch["mask"][r].numpy(), dataset.palette))]
        panels += [(t, colorize(preds[t][r], dataset.palette)) for t, _ in models]
        for c, (title, img) in enumerate(panels):
            axes[r, c].imshow(img)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: what each label encoding tells the teacher (printed in the report, so a reader knows which ran)
ENCODING_NOTES = {
    "random_codes": "the reference's: per-image random codes that say which pixels belong together, not their class",
    "onehot": "an ablation: one channel per class, so the label gives the class away",
}


def teacher_encoding_line(recipe: DemoRecipe) -> str:
    """One line naming the teacher's label encoding and its corruptions (from the recipe's teacher config)."""
    from ladseg.engine.config import load_config
    from ladseg.methods.label_encoding import EncoderParams

    enc = EncoderParams.from_dict(load_config(recipe.teacher).method.get("encoder"))
    corrupt = {k: v for k, v in vars(enc.corruption).items() if k.endswith("_prob") and v > 0}
    extra = f", corrupted in training ({', '.join(f'{k} {v}' for k, v in corrupt.items())})" if corrupt else ""
    note = ENCODING_NOTES.get(enc.kind, "")
    return f"Teacher label encoding: `{enc.kind}`{' (' + note + ')' if note else ''}, noise {enc.noise}{extra}.\n"


def write_report(
    results: list[SeedResult], out: Path, recipe: DemoRecipe, profile: str, extra: list[str], seconds: float
) -> dict[str, Any]:
    """Write the report folder, print the table, return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    summary.update(profile=profile, total_seconds=seconds, overrides=extra)
    table = markdown_table(summary)
    header = (
        f"# ladseg demo: LAD on the embedded dataset ({profile} profile, seeds {summary['seeds']})\n\n"
        "Validation split of the embedded dataset (never used for any choice); every model as saved at its last "
        "iteration (its weight average where the recipe sets train.ema_decay).\n"
        "The control is the baseline trained for as many extra iterations as the LAD student, at the same learning "
        "rate and auxiliary-loss weight, without a teacher.\n"
        + teacher_encoding_line(recipe) + "\n"
    )
    times = ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items())
    (out / "report.md").write_text(header + table + f"\n\nTime per seed: {times}. Total: {seconds:.0f} s.\n\n"
                                   "![curves](curves.png)\n\n![predictions](predictions.png)\n")
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    plot_curves(results, out / "curves.png")
    plot_predictions(results[0], recipe, profile, extra, out / "predictions.png")
    print("\n" + table)
    print(f"\nreport: {out}/report.md  (total {seconds / 60:.1f} min)")
    return summary
