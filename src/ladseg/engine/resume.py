"""What a resumed run takes from its checkpoint and what from its config (command line included).

From the checkpoint: the weights, the optimiser's moments (momentum buffers, Adam averages), the
iteration, the RNG states, the weight average and the best mIoU so far. From the config: every
setting, the optimiser's hyperparameters included (``optim.lr``, ``weight_decay``, momentum), so
``config.yaml`` and the checkpoints record what the run really uses. A changed setting is listed
when the run resumes; a changed ``train.iters`` restarts the poly schedule over the new total.
``model.pretrained`` and ``train.init_checkpoint`` cannot take effect (the weights are restored) and
are listed as kept from the checkpoint. A changed ``run.seed`` is refused (the RNG states are
restored but the data order would follow the new seed: neither run), as is a changed
architecture (:func:`ladseg.engine.checkpoint.check_model_spec`).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from ladseg.errors import ConfigError

#: settings a resumed run cannot apply: its checkpoint's state decides them
KEPT_FROM_CHECKPOINT = {
    "model.pretrained": "the weights are restored",
    "train.init_checkpoint": "the weights are restored",
}
#: settings that say where and whether to resume, not how to train
NOT_COMPARED = ("run.work_dir", "run.name", "train.resume")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.01}}`` -> ``{"optim.lr": 0.01}`` (lists stay whole values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def changed_settings(saved: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``key -> (checkpoint value, config value)`` for the settings both configs have and differ in."""
    if not isinstance(saved, dict):
        return {}
    before, after = flatten(saved), flatten(current)
    return {
        key: (before[key], after[key])
        for key in sorted(set(before) & set(after))
        if before[key] != after[key] and key not in NOT_COMPARED
    }


def refuse_changes(changes: dict[str, tuple[Any, Any]], path: Any) -> None:
    """A changed ``run.seed`` cannot be applied half-way (restored RNG, new data order): refuse it."""
    if "run.seed" in changes:
        old, new = changes["run.seed"]
        raise ConfigError(
            f"run.seed={new} differs from the seed of {path} ({old}): a resumed run continues its checkpoint's "
            f"random streams; keep run.seed={old}, or start over with train.resume=false or another run.work_dir"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str | None:
    """One line: the changed settings applied, and those kept from the checkpoint (None: no change)."""
    if not changes:
        return None
    applied, kept = [], []
    for key, (old, new) in changes.items():
        item = f"{key} {_short(old)} -> {_short(new)}"
        if key in KEPT_FROM_CHECKPOINT:
            kept.append(f"{item} ({KEPT_FROM_CHECKPOINT[key]})")
        elif key == "train.iters":
            applied.append(f"{item} (the poly schedule restarts over the new total of {new} iterations)")
        else:
            applied.append(item)
    parts = []
    if applied:
        parts.append("applied from the config: " + "; ".join(applied))
    if kept:
        parts.append("not applied, kept from the checkpoint: " + "; ".join(kept))
    return "resuming with changed settings: " + "; ".join(parts)


def hyperparameters(optimizer: Optimizer) -> list[dict[str, Any]]:
    """Each param group's settings (lr, weight_decay, momentum, ...) without its parameters."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def apply_hyperparameters(optimizer: Optimizer, groups: list[dict[str, Any]]) -> None:
    """Put the config's group settings back after ``load_state_dict`` replaced them by the checkpoint's."""
    for group, settings in zip(optimizer.param_groups, groups, strict=True):
        group.update(settings)
