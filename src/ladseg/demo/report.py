"""The demo's report folder: ``report.md`` / ``report.json`` (the table), ``curves.png``
(training loss and validation mIoU of every stage) and ``predictions.png`` (a few validation
images: image, ground truth, each model's prediction).

Summaries and figures only, from the seeds' results and logs: nothing here trains or runs a model."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ladseg.demo.plots import PredictionPanels, plot_curves, plot_label_gap, plot_predictions
from ladseg.demo.recipe import DemoRecipe, SeedResult
from ladseg.engine.config import load_config
from ladseg.methods.label_encoding import ENCODING_INFO, EncoderParams

GAIN = ("LAD student", "control")  # the gain the demo reports: LAD student minus control
LABEL_USE = ("teacher (with labels)", "teacher (no labels)")  # how much the teacher reads its label
#: LAD student minus self-distillation: what the label adds beyond distilling from a same-size network
OVER_SELF = ("LAD student", "self-distillation")
LABEL_USE_RANDOM = ("teacher (random codes)", "teacher (no labels)")  # label use with training-style codes
LABEL_AWARE_MIOU = 1.0  # below this gap the teacher is reported as not using its label channel


def mean_std(values: list[float]) -> tuple[float, float]:
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
    return paired_gap([(r.metrics[row].miou - r.metrics[minus].miou) * 100 for r in results])


def paired_gap(per_seed: list[float]) -> dict[str, Any]:
    """Mean, std and standard error of per-seed differences (points)."""
    mean, std = mean_std(per_seed)
    stderr = std / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    return {"mean": mean, "std": std, "stderr": stderr, "per_seed": per_seed}


def verdict_word(gap: dict[str, Any]) -> str:
    """``gain`` / ``loss`` beyond 2 standard errors of the paired difference, else ``noise`` (``1 seed``)."""
    if math.isnan(gap["stderr"]):
        return "1 seed"
    if abs(gap["mean"]) <= 2 * gap["stderr"]:
        return "noise"
    return "gain" if gap["mean"] > 0 else "loss"


def noise_verdict(gap: dict[str, Any]) -> str:
    """Whether a paired gain stands out of the seed-to-seed noise (more than 2 standard errors from zero)."""
    word, se = verdict_word(gap), gap["stderr"]
    if word == "1 seed":
        return "One seed: the seed-to-seed spread is unknown (run --seeds 3 before reading a gain)."
    if word == "noise":
        return f"Within 2 standard errors (SE {se:.2f}) of zero: not distinguishable from seed-to-seed noise."
    return f"More than 2 standard errors (SE {se:.2f}) from zero: a {word} that stands out of seed-to-seed noise."


def gap_text(gap: dict[str, Any], n: int) -> str:
    """``+1.23 mIoU`` with, over several seeds, its std, standard error and per-seed values."""
    text = f"{gap['mean']:+.2f} mIoU"
    if n > 1:
        per_seed = ", ".join(f"{d:+.2f}" for d in gap["per_seed"])
        text += f" (± {gap['std']:.2f} std, SE {gap['stderr']:.2f}; per seed {per_seed})"
    return text


def summarize(results: list[SeedResult], variants: tuple[str, ...] = ()) -> dict[str, Any]:
    """mIoU and per-class IoU (percent) of every row, per seed and as mean / std over seeds; the gaps
    the report reads (the LAD student against the control, self-distillation and the baseline; each
    teacher's label use), and the same for every label variant under ``summary["variants"][name]``."""
    rows = list(results[0].metrics)
    names = results[0].class_names
    summary: dict[str, Any] = {"seeds": [r.seed for r in results], "class_names": names, "rows": {}}
    for row in rows:
        mious = [r.metrics[row].miou * 100 for r in results]
        ious = np.array([(r.metrics[row].iou * 100).tolist() for r in results], dtype=float)
        with np.errstate(invalid="ignore"):
            per_class = np.nanmean(ious, axis=0) if not np.isnan(ious).all() else ious[0]
        mean, std = mean_std(mious)
        summary["rows"][row] = {
            "mIoU": mean, "mIoU_std": std, "mIoU_per_seed": mious,
            "IoU": dict(zip(names, [None if math.isnan(v) else float(v) for v in per_class], strict=True)),
        }  # fmt: skip
    summary["gain_vs_control"] = _gap(results, *GAIN)
    summary["gain_vs_baseline"] = _gap(results, GAIN[0], "baseline")
    for key, pair in (
        ("label_use", LABEL_USE),
        ("label_use_random", LABEL_USE_RANDOM),
        ("gain_vs_self_distill", OVER_SELF),
    ):
        if all(row in results[0].metrics for row in pair):
            summary[key] = _gap(results, *pair)
    summary["variants"] = {
        name: {
            key: _gap(results, row.format(name), minus.format(name))
            for key, row, minus in (
                ("gain_vs_control", "LAD student {}", "control"),
                ("gain_vs_self_distill", "LAD student {}", "self-distillation"),
                ("label_use", "teacher {} (with labels)", "teacher {} (no labels)"),
            )
            if row.format(name) in results[0].metrics and minus.format(name) in results[0].metrics
        }
        for name in variants
    }
    summary["stage_seconds"] = {
        k: statistics.fmean(r.seconds[k] for r in results) for k in results[0].seconds
    }
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
    lines.append(f"**LAD student − control: {gap_text(g, n)}**")
    lines.append(noise_verdict(g))
    over_self = summary.get("gain_vs_self_distill")
    if over_self is not None:
        lines.append(
            f"**LAD student − self-distillation (the baseline as teacher): {gap_text(over_self, n)}**"
        )
        lines.append(noise_verdict(over_self))
    lines.append(f"LAD student − baseline: {b['mean']:+.2f} mIoU (includes the extra fine-tuning iterations)")
    use = summary.get("label_use")
    if use is not None:
        lines.append(f"Teacher with (fixed codes) − without its label channel: {gap_text(use, n)}")
        if "label_use_random" in summary:
            lines.append(
                f"Teacher with random codes − without its label channel: {gap_text(summary['label_use_random'], n)}"
            )
        if use["mean"] < LABEL_AWARE_MIOU:
            lines.append(
                "The teacher barely uses its label channel, so the student's gain over the control is that of "
                "distillation from a same-size teacher, not of label assistance."
            )
    for name, gaps in summary.get("variants", {}).items():
        lines.append("")
        lines.append(
            f"**Variant {name}: LAD student {name} − control: {gap_text(gaps['gain_vs_control'], n)}**"
        )
        lines.append(noise_verdict(gaps["gain_vs_control"]))
        if "gain_vs_self_distill" in gaps:
            lines.append(
                f"LAD student {name} − self-distillation: {gap_text(gaps['gain_vs_self_distill'], n)}"
            )
        if "label_use" in gaps:
            lines.append(f"Teacher {name} with − without its label channel: {gap_text(gaps['label_use'], n)}")
    return "\n".join(lines)


def recipe_dataset(recipe: DemoRecipe) -> str:
    """The dataset a recipe trains on, as a report names it (e.g. ``camvid``)."""
    name = load_config(recipe.baseline).data.dataset
    return "the embedded dataset" if name == "embedded" else name


def teacher_encoding_line(recipe: DemoRecipe) -> str:
    """A line per teacher (the recipe's, then each variant's) naming its label encoding and its
    corruptions (from the teacher's config)."""
    teachers = [("Teacher", recipe.teacher)] + [
        (f"Teacher {n}", v.teacher) for n, v in recipe.variants.items()
    ]
    lines = []
    for title, path in teachers:
        enc: EncoderParams = load_config(path).method.encoder  # a lad_teacher's typed section
        corrupt = {k: v for k, v in vars(enc.corruption).items() if k.endswith("_prob") and v > 0}
        extra = (
            f", corrupted in training ({', '.join(f'{k} {v}' for k, v in corrupt.items())})"
            if corrupt
            else ""
        )
        info = ENCODING_INFO.get(enc.kind)
        note = info.description if info else ""
        lines.append(
            f"{title} label encoding: `{enc.kind}`{' (' + note + ')' if note else ''}, noise {enc.noise}{extra}.\n"
        )
    return "".join(lines)


def write_report(
    results: list[SeedResult],
    out: Path,
    recipe: DemoRecipe,
    profile: str,
    extra: list[str],
    seconds: float,
    panels: PredictionPanels,
) -> dict[str, Any]:
    """Write the report folder, print the table, return the summary.

    ``seconds`` is the demo's training and evaluation time; ``panels`` the predictions figure's content.
    """
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results, tuple(recipe.variants))
    summary.update(profile=profile, total_seconds=seconds, overrides=extra)
    table = markdown_table(summary)
    dataset = recipe_dataset(recipe)
    header = (
        f"# ladseg demo: LAD on {dataset} ({profile} profile, seeds {summary['seeds']})\n\n"
        f"Validation split of {dataset} (never used for any choice); every model as saved at its last "
        "iteration (its weight average where the recipe sets train.ema_decay).\n"
        "The control is the baseline trained for as many extra iterations as the LAD student, at the same learning "
        "rate and auxiliary-loss weight, without a teacher."
        + (
            " Self-distillation is the LAD student's loss and fine-tuning with the baseline itself as the teacher "
            "(no label): the LAD student's gain over it is what the label adds.\n"
            if "self_distill" in recipe.stages
            else "\n"
        )
        + teacher_encoding_line(recipe)
        + "\n"
    )
    times = ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items())
    (out / "report.md").write_text(
        header + table + f"\n\nTraining time per seed (steps only, from each stage's log): {times}; "
        f"{sum(summary['stage_seconds'].values()):.0f} s in all. This invocation's wall time, training and "
        f"evaluation (stages reused from an earlier run count only their evaluation): {seconds:.0f} s.\n\n"
        "![curves](curves.png)\n\n![label-use gap](label_gap.png)\n\n"
        "![predictions](predictions.png)\n"
    )
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    plot_curves(results, recipe.stages, out / "curves.png")
    plot_label_gap(results, [s for s in recipe.stages if s.startswith("teacher")], out / "label_gap.png")
    plot_predictions(panels, out / "predictions.png")
    print("\n" + table)
    print(f"\nreport: {out}/report.md  (total {seconds / 60:.1f} min)")
    return summary
