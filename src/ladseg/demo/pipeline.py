"""The demo's stages, for one seed::

    baseline  = train(student config, supervised)                     # the plain student
    teacher   = train(teacher config, lad_teacher)                    # image + label channel, dual path
    student   = train(distill config, init=baseline, teacher=teacher) # LAD student, fine-tuned
    control   = train(student config, init=baseline, same iters/lr)   # extra training, no teacher

    teacher_<v>, student_<v>  = the same two stages for each label variant <v> of the recipe

then every model is evaluated on the held-out split (each teacher twice: with its fixed-code label
channel and with a zero channel). The control exists because the reference fine-tunes a trained
baseline: extra training alone must not be mistaken for the method's gain, so the reported gain
is *LAD student minus control*. All models are taken at their last iteration (no checkpoint is
picked on the validation split that is reported).

This module runs things (training, evaluation, the predictions shown in the report); the recipe
is read by :mod:`ladseg.demo.recipe` and the report is written by :mod:`ladseg.demo.report`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladseg.config_lookup import DEFAULT_RECIPE
from ladseg.data import colorize, denormalize
from ladseg.demo.plots import PredictionPanels
from ladseg.demo.recipe import DemoRecipe, SeedResult, load_recipe, stage_config
from ladseg.demo.report import write_report
from ladseg.engine.builders import build_split
from ladseg.engine.checkpoint import build_model_from_checkpoint
from ladseg.engine.checkpoint_eval import evaluate_checkpoint
from ladseg.engine.config import inference_settings
from ladseg.engine.inference import infer
from ladseg.engine.inputs import input_normalization
from ladseg.engine.logging import read_metrics
from ladseg.engine.metrics import SegMetrics
from ladseg.engine.trainer import train
from ladseg.methods import build_method

#: the models shown in the predictions figure: (title, stage); then each label variant's teacher and student
FIGURE_MODELS = (
    ("baseline", "baseline"),
    ("control", "control"),
    ("teacher (labels)", "teacher"),
    ("LAD student", "student"),
    ("self-distillation", "self_distill"),
)


def figure_models(recipe: DemoRecipe) -> list[tuple[str, str]]:
    """The predictions figure's columns for this recipe: :data:`FIGURE_MODELS` it has, then its variants'."""
    models = [(title, stage) for title, stage in FIGURE_MODELS if stage in recipe.stages]
    for name in recipe.variants:
        models += [
            (f"teacher {name} (labels)", f"teacher_{name}"),
            (f"LAD student {name}", f"student_{name}"),
        ]
    return models


def training_seconds(work_dir: Path) -> float:
    """Seconds the stage spent in training steps, from its own log (a reused or resumed stage counts
    what it really took, not this invocation's time); validation is not included."""
    seconds, last = 0.0, 0
    for record in read_metrics(work_dir):
        if record["type"] == "train" and record.get("s_per_iter") is not None:
            seconds += record["s_per_iter"] * (record["iter"] - last)
            last = record["iter"]
    return seconds


def run_seed(
    recipe: DemoRecipe, out: Path, seed: int, profile: str = "default", extra: list[str] | None = None
) -> SeedResult:
    """Train the stages of one seed (a finished stage is reused) and evaluate them."""
    run_dir = out / f"seed{seed}"
    seconds: dict[str, float] = {}
    for stage in recipe.stages:
        print(f"\n== seed {seed}: {stage} ==", flush=True)
        train(stage_config(recipe, stage, run_dir, seed, profile, extra or []))
        seconds[stage] = training_seconds(run_dir / stage)
    metrics: dict[str, SegMetrics] = {}
    class_names: list[str] = []
    for row, stage, params in recipe.rows():
        cfg = stage_config(recipe, stage, run_dir, seed, profile, extra or [])
        m, dataset = evaluate_checkpoint(
            cfg, run_dir / stage / "last.pth", method_params=params, progress=False
        )
        metrics[row] = m
        class_names = list(dataset.classes)
    return SeedResult(seed, run_dir, metrics, seconds, class_names)


def predict_samples(
    result: SeedResult, recipe: DemoRecipe, profile: str, extra: list[str], count: int = 4
) -> PredictionPanels:
    """A few validation images, their ground truth and each stage's prediction, as coloured panels.

    Each model predicts as it is evaluated (its config's inference mode, e.g. the demo's 64-px sliding
    windows); a teacher through its method, with its fixed-code label channel.
    """
    cfg = stage_config(recipe, "baseline", result.run_dir, result.seed, profile, extra)
    dataset = build_split(cfg, cfg.data.val_split, train=False)
    idx = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    samples = [dataset[i] for i in idx]
    batch = {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([torch.as_tensor(s["mask"]) for s in samples]),
    }
    preds: dict[str, np.ndarray] = {}
    for title, stage in figure_models(recipe):
        scfg = stage_config(recipe, stage, result.run_dir, result.seed, profile, extra)
        model, _ = build_model_from_checkpoint(result.run_dir / stage / "last.pth")
        model.eval()
        x = batch["image"]
        if recipe.split_stage(stage)[0] == "teacher":  # through its method, with its fixed-code label
            method = build_method(
                scfg.method_name,
                scfg.method,
                model,
                model.num_classes,
                data_normalization=input_normalization(scfg.data.normalize),
            )
            x = method.inference_input(batch)
        settings = inference_settings(scfg)
        with torch.no_grad():
            preds[title] = infer(model, x, settings.mode, **settings.kwargs()).argmax(1).numpy()
    return PredictionPanels(
        images=[denormalize(batch["image"][r], cfg.data.normalize) for r in range(count)],
        truth=[colorize(batch["mask"][r].numpy(), dataset.palette) for r in range(count)],
        predictions={t: [colorize(p[r], dataset.palette) for r in range(count)] for t, p in preds.items()},
    )


def run_demo(
    out: str | Path = "runs/demo",
    seeds: int = 1,
    quick: bool = False,
    recipe_path: str | Path = DEFAULT_RECIPE,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run the demo for ``seeds`` seeds and write the report folder; returns the summary dict."""
    t0 = time.perf_counter()
    recipe = load_recipe(recipe_path)
    profile = "quick" if quick else "default"
    out = Path(out)
    extra = extra or []
    results = [run_seed(recipe, out, seed, profile, extra) for seed in range(seeds)]
    seconds = time.perf_counter() - t0  # training and evaluation, as the report states
    panels = predict_samples(results[0], recipe, profile, extra)
    return write_report(results, out / "report", recipe, profile, extra, seconds, panels)
