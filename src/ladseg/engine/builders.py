"""Turn config sections into the parts the engine drives: datasets, networks, method, optimiser.

Every import is at the top (no cycle needs a local one): data, models, losses and methods sit
below the engine, and nothing they import reaches back into it.

Every method (supervised, LAD teacher, distillation, KD baselines) is built here the same way,
so baselines and distillation differ only in their ``method:`` and ``teacher:`` sections.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Subset

from ladseg.data import build_dataset, build_loader
from ladseg.data.transforms import build_transforms
from ladseg.engine.checkpoint import build_model_from_checkpoint, load_weights_into
from ladseg.engine.config import Config, ModelConfig
from ladseg.engine.dist import per_process_batch, shard_indices, world_size
from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError, DatasetError
from ladseg.methods import METHODS, build_method
from ladseg.methods.base import Method
from ladseg.models import Segmentor, build_model


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"run.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(
            f"run.device={name!r} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
        )
    return device


# -- data ------------------------------------------------------------------------------------
def build_split(cfg: Config, split: str, train: bool) -> Any:
    """A dataset split with the config's transforms (random scale/crop/flip for training)."""
    d = cfg.data
    if train:
        transform = build_transforms(
            True, tuple(d.crop_size), scale_range=tuple(d.scale_range), flip=d.flip,
            photometric=d.photometric, normalize=d.normalize, resize_ratio=d.resize_ratio, pad=d.pad,
        )  # fmt: skip
    else:
        transform = build_transforms(
            False, tuple(d.crop_size), normalize=d.normalize, resize_ratio=d.resize_ratio
        )
    return build_dataset(d.dataset, d.root, split, transform=transform, **d.kwargs)


def build_loader_for(cfg: Config, dataset: Any, train: bool, seed: int = 0) -> Any:
    """The loader of one process.

    Under a process group, training splits the global ``data.batch_size`` over the processes and
    shuffles with a DistributedSampler seeded with ``seed``; evaluation reads this rank's unpadded
    shard (:func:`~ladseg.engine.dist.shard_indices`), so the reduced metrics count each image once.
    ``eval.batch_size`` is per process.
    """
    workers = cfg.data.num_workers
    if world_size() == 1:
        batch_size = cfg.data.batch_size if train else cfg.eval.batch_size
        return build_loader(dataset, batch_size, train, num_workers=workers, seed=seed)
    if train:
        batch = per_process_batch(cfg.data.batch_size)
        per_rank = len(dataset) // world_size()
        if per_rank < batch:
            raise DatasetError(
                f"the training set has {len(dataset)} items: {per_rank} per process, fewer than one "
                f"per-process batch of {batch} (data.batch_size={cfg.data.batch_size} over {world_size()} processes)"
            )
        return build_loader(dataset, batch, True, num_workers=workers, seed=seed, distributed=True)
    shard = Subset(dataset, shard_indices(len(dataset)))
    return build_loader(shard, cfg.eval.batch_size, False, num_workers=workers, seed=seed)


def dataset_num_classes(cfg: Config, dataset: Any) -> int:
    """The dataset's class count; a different ``model.num_classes`` is an error, not a silent pick."""
    n = int(dataset.num_classes)
    if cfg.model.num_classes is not None and cfg.model.num_classes != n:
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes} but dataset {cfg.data.dataset!r} has {n} classes "
            "(leave model.num_classes null to take it from the dataset)"
        )
    return n


# -- networks --------------------------------------------------------------------------------
#: ``model.pretrained`` / ``train.init_checkpoint`` value of a paper recipe: the run must be given the file
REQUIRED = "required"
#: known names of the ImageNet weights a backbone's recipe starts from (the error message names them)
_PRETRAINED_FILES = {"resnet18": "resnet18_deep_stem_imagenet.pth (the reference's deep-stem ResNet-18)"}


def resolve_pretrained(section: ModelConfig, needed: bool = True) -> str | None:
    """``model.pretrained`` as a path or None; ``required`` (a paper recipe) without a file is an error.

    A paper recipe never starts silently from random weights: it says ``pretrained: required`` and the
    run names the file, or says ``pretrained: none`` to train from random weights on purpose. ``needed``
    is False where trained weights replace the ImageNet ones anyway (a teacher, an ``init_checkpoint``).
    """
    value = section.pretrained
    if value is None or str(value).lower() == "none":
        return None
    if value == REQUIRED:
        if not needed:
            return None
        name = _PRETRAINED_FILES.get(section.backbone, f"{section.backbone} ImageNet weights (.pth)")
        raise ConfigError(
            f"model.pretrained: this recipe starts the {section.backbone} backbone from ImageNet weights, as the "
            f"paper does; pass model.pretrained=path/to/{name}, or model.pretrained=none to train from random weights"
        )
    return value


def build_network(
    section: ModelConfig, num_classes: int, in_channels: int | None = None, pretrained_needed: bool = True
) -> Segmentor:
    return build_model(
        section.name,
        section.backbone,
        num_classes=section.num_classes or num_classes,
        in_channels=in_channels or section.in_channels,
        aux=section.aux,
        output_stride=section.output_stride,
        pretrained=resolve_pretrained(section, pretrained_needed),
        head=dict(section.head) or None,
        label_branch=section.label_branch,
    )


def build_trained_network(cfg: Config, num_classes: int) -> Segmentor:
    """The trained network; ``train.init_checkpoint`` starts it from trained weights (fine-tuning).

    The checkpoint's input normalisation must be the config's (``data.normalize``): the network reads
    the batches as they are, and fine-tuning weights trained on another input would start from a
    network that sees garbage (e.g. a reference checkpoint, BGR 0-255, fed ImageNet-normalised RGB).
    A LAD teacher (``model.in_channels`` 3 + k) may start from an image-only checkpoint, the trained
    baseline as in the reference: its first conv is widened with zero label-channel weights, as the
    reference's baseline checkpoints carry them. ``init_checkpoint: required`` (a recipe that fine-tunes)
    without a file is an error.
    """
    init = cfg.train.init_checkpoint
    if init == REQUIRED:
        raise ConfigError(
            "train.init_checkpoint: this recipe starts from a trained checkpoint (see the config's header, "
            "e.g. the supervised baseline's best.pth); pass train.init_checkpoint=path/to/best.pth"
        )
    network = build_network(cfg.model, num_classes, pretrained_needed=not init)
    if init:
        meta = load_weights_into(network, init, widen_input=True)
        declared = meta.get("normalize")
        if declared and declared != cfg.data.normalize:
            raise ConfigError(
                f"train.init_checkpoint {cfg.train.init_checkpoint} was trained on {declared!r} input but "
                f"data.normalize is {cfg.data.normalize!r}: set data.normalize={declared} to fine-tune it"
            )
    return network


def build_teacher(cfg: Config, num_classes: int) -> Segmentor:
    """The frozen teacher from ``teacher:`` (model section or the checkpoint's own spec) + its weights."""
    t = cfg.teacher
    if not t.checkpoint:
        raise ConfigError(f"method {cfg.method_name!r} needs a trained teacher: set teacher.checkpoint")
    if t.model is None:
        teacher, meta = build_model_from_checkpoint(t.checkpoint)
    else:
        teacher = build_network(t.model, num_classes, in_channels=t.in_channels, pretrained_needed=False)
        meta = load_weights_into(teacher, t.checkpoint)
    # What the teacher reads (its normalisation, its label encoding) travels with it: the method
    # converts each batch into that input (see Distill.set_teacher).
    teacher.meta = {k: meta.get(k) for k in ("normalize", "config", "spec", "source")}
    if teacher.num_classes != num_classes:
        raise ConfigError(
            f"teacher {t.checkpoint} predicts {teacher.num_classes} classes but the student has {num_classes}"
        )
    return teacher.eval()


def method_class(name: str) -> type[Method]:
    try:
        return METHODS.get(name)  # type: ignore[return-value]
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def build_method_from_config(
    cfg: Config, network: Segmentor, num_classes: int, teacher: Segmentor | None
) -> Method:
    """The config's method (its section already typed and checked when the config was read)."""
    try:
        return build_method(
            cfg.method_name,
            cfg.method,
            network,
            num_classes,
            teacher=teacher,
            data_normalization=input_normalization(cfg.data.normalize),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"method section ({cfg.method_name}): {exc}") from None


# -- optimisation ----------------------------------------------------------------------------
#: ``optim.name`` -> (param groups, optim config) -> optimiser
OPTIMIZERS: dict[str, Any] = {  # one entry per config.OPTIMIZER_NAMES
    "sgd": lambda groups, o: torch.optim.SGD(
        groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
    ),
    "adamw": lambda groups, o: torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay),
}


def build_optimizer(method: Method, cfg: Config) -> torch.optim.Optimizer:
    """``optim.name`` (SGD by default, AdamW) over the trainable parameters; outside the backbone
    the lr is ``head_lr_mult`` x lr.

    The teacher is not a submodule of the method, so it never reaches the optimiser; nor do the
    parameters a part of the method steps with its own optimiser (``separately_optimized_parameters``).
    """
    o = cfg.optim
    if o.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name: unknown optimiser {o.name!r}; valid: {sorted(OPTIMIZERS)}")
    backbone_ids = {id(p) for p in method.network.backbone.parameters()}
    excluded = {id(p) for p in method.separately_optimized_parameters()}  # e.g. a discriminator's own Adam
    params = [p for p in method.parameters() if p.requires_grad and id(p) not in excluded]
    groups = [
        {"params": [p for p in params if id(p) in backbone_ids], "lr": o.lr},
        {"params": [p for p in params if id(p) not in backbone_ids], "lr": o.lr * o.head_lr_mult},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError(f"method {cfg.method_name!r} has no trainable parameters")
    return OPTIMIZERS[o.name](groups, o)
