"""The one training engine every method plugs into.

``train(cfg)`` builds data, the network of ``model:`` (and a frozen teacher when the method needs one), the
method, SGD with a poly schedule, then runs an iteration-based loop::

    for each iteration:  lr <- poly(i);  terms = module(batch);  backward/step (autocast, scaler)
        every log_interval:        one JSON line (iter, lr, loss terms, s/iter)
        every val_interval:        evaluate(method.eval_model()) -> best.pth on a new best mIoU
        every checkpoint_interval: last.pth (model + meta + resume state)

With ``train.ema_decay`` set, an exponential moving average of the deployed network's weights
(:mod:`ladseg.engine.ema`) is what validation runs and what ``model`` in a checkpoint holds; the
raw weights stay in the resume state.

``self.module`` is what the loop calls: the method, or DistributedDataParallel around it when
launched by torchrun (``WORLD_SIZE > 1``; see :mod:`ladseg.engine.dist`). Under a process group
the global ``data.batch_size`` is split over the processes, training data comes from a
DistributedSampler, the method's BatchNorm becomes SyncBatchNorm (``train.sync_bn``; CUDA only),
each rank draws its own augmentation and label-code randomness (seed + rank), validation runs on
unpadded shards with the confusion matrix summed over ranks, and only rank 0 writes files.
The frozen teacher lives outside the method's module tree, so it never enters DDP.
A run folder holding ``last.pth`` is resumed (iteration, optimiser, schedule, RNG states; the
data order continues mid-epoch where it stopped, so a resumed run ends where an uninterrupted one does).
Speed settings (channels_last, torch.compile, threads, workers, CUDA options) are decided per
device in :mod:`ladseg.engine.acceleration`; none of them changes what a checkpoint holds.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ladseg.data.loader import skip_batches
from ladseg.engine import acceleration as accel
from ladseg.engine.amp import amp_note, build_amp
from ladseg.engine.builders import (
    build_loader_for,
    build_method_from_config,
    build_optimizer,
    build_split,
    build_teacher,
    build_trained_network,
    dataset_num_classes,
    method_class,
    resolve_device,
)
from ladseg.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    check_format,
    check_model_spec,
    load_checkpoint,
    migrate_resume_state,
    save_checkpoint,
    use_previous_checkpoint,
)
from ladseg.engine.config import Config, inference_settings, save_config
from ladseg.engine.dist import (
    all_reduce_mean,
    all_true,
    broadcast_buffers,
    destroy_distributed,
    init_distributed,
    is_main_process,
    rank,
    world_size,
)
from ladseg.engine.ema import WeightAverage
from ladseg.engine.evaluation import evaluate, move_batch
from ladseg.engine.interrupts import StopSignals, TrainingInterrupted
from ladseg.engine.logging import RunLogger, drop_records_after, read_metrics, set_aside_old_log
from ladseg.engine.metrics import SegMetrics
from ladseg.engine.resume import (
    apply_hyperparameters,
    changed_settings,
    describe_changes,
    hyperparameters,
    refuse_changes,
)
from ladseg.engine.rng import get_rng_state, seed_everything, set_rng_state
from ladseg.engine.run_lock import RunFolderLock
from ladseg.engine.schedule import PolySchedule
from ladseg.errors import CheckpointError, ConfigError, LadsegError
from ladseg.models.weights import UnreadableCheckpoint
from ladseg.notes import note


class Trainer:
    """Holds the parts of one run; :meth:`fit` runs it to ``train.iters``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.work_dir = Path(cfg.run.work_dir or Path("work_dirs") / (cfg.run.name or "run"))
        self.device, self.owns_process_group = init_distributed(resolve_device(cfg.run.device))
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        accel.setup_device(self.device)  # CUDA: cudnn benchmark (fixed crops), TF32
        accel.set_threads(self.device)  # cores / local processes, unless OMP_NUM_THREADS says otherwise
        self.channels_last = accel.use_channels_last(cfg.train.channels_last, self.device)
        accel.tri_state(cfg.train.compile, "train.compile")  # a bad value fails before any data is read
        self.steps = accel.StepRunner()  # eager, or compiled with an eager fallback
        self.train_loader: Any = None
        seed_everything(cfg.run.seed)  # the same initial networks on every rank
        self.train_set = build_split(cfg, cfg.data.train_split, train=True)
        self.val_set = build_split(cfg, cfg.data.val_split, train=False)
        self.num_classes = dataset_num_classes(cfg, self.train_set)
        self.method = self._build_method()
        self.module: nn.Module = self._wrap_ddp(self.method)
        self.optimizer = build_optimizer(self.method, cfg)
        accel.set_fused(self.optimizer, self.device)
        o = cfg.optim
        self.schedule = PolySchedule(
            self.optimizer, cfg.train.iters, o.poly_power, o.warmup_iters, o.warmup_ratio
        )
        self.amp = build_amp(cfg.train.amp, self.device)
        if (message := amp_note(cfg.train.amp, self.device)) and is_main_process():
            note(message)
        decay = cfg.train.ema_decay
        self.ema = WeightAverage(self.method.export_model(), decay) if decay is not None else None
        self.iteration = 0
        self.best_miou = -math.inf
        self.last_metrics: dict[str, Any] = {}
        self.saved_iteration: int | None = None  # the iteration last.pth holds
        self.rng_before_validation: dict[str, Any] | None = None
        if world_size() > 1:
            seed_everything(cfg.run.seed + rank())  # per-rank crops, flips and label codes

    def close(self) -> None:
        """Leave the process group this trainer joined (no-op for single-process runs)."""
        if self.owns_process_group:
            destroy_distributed()
            self.owns_process_group = False

    # -- construction ----------------------------------------------------------------------
    def _build_method(self) -> Any:
        cfg = self.cfg
        network = build_trained_network(cfg, self.num_classes)
        teacher = (
            build_teacher(cfg, self.num_classes) if method_class(cfg.method_name).needs_teacher else None
        )
        method = build_method_from_config(cfg, network, self.num_classes, teacher)
        method.to(self.device)
        if method.teacher is not None:
            method.teacher.to(self.device)
        accel.prepare_method(method, self.channels_last)  # memory format; teacher under inference_mode
        if world_size() > 1 and self._sync_bn():
            nn.SyncBatchNorm.convert_sync_batchnorm(method)  # in place; the teacher is not in the tree
        return method

    def _sync_bn(self) -> bool:
        sync = self.cfg.train.sync_bn
        if sync is None:
            return self.device.type == "cuda"
        if sync and self.device.type != "cuda":
            raise ConfigError(
                "train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU/gloo kernel); "
                "leave it null (auto) or set false for multi-process CPU runs"
            )
        return sync

    def _wrap_ddp(self, method: nn.Module) -> nn.Module:
        """DistributedDataParallel around the method (rank 0's weights are broadcast at wrap time)."""
        if world_size() == 1:
            return method
        return DistributedDataParallel(
            method,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.cfg.train.find_unused_parameters,
        )

    def training_batches(self) -> Iterator[dict[str, Any]]:
        """Endless batches from one loader (built once, workers kept); ``set_epoch(e)`` reshuffles.

        Epoch e's order is drawn from seed + e, so it is reproducible. On resume the current epoch
        continues where it stopped: its batches already trained on are skipped by index (nothing
        is read for them), so with the restored RNG states a resumed run sees the same batches as
        an uninterrupted one. Under a process group the DistributedSampler is seeded the same way
        on every rank, so the ranks read disjoint parts of one permutation.
        """
        if self.train_loader is None:
            workers = accel.plan_workers(self.cfg.data.num_workers)  # this process's share of the cores
            cfg = copy.copy(self.cfg)
            cfg.data = dataclasses.replace(cfg.data, num_workers=workers)
            loader = build_loader_for(cfg, self.train_set, train=True, seed=self.cfg.run.seed)
            self.train_loader = accel.pin_loader(loader, self.device)
        loader = self.train_loader
        epoch, done = divmod(self.iteration, max(1, len(loader)))
        while True:
            loader.sampler.set_epoch(epoch)
            yield from (skip_batches(loader, done) if done else loader)
            done = 0
            epoch += 1

    # -- one step --------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One optimisation step; returns the detached loss terms. A non-finite loss stops the run.

        With ``train.compile`` the first step compiles; if that fails the step reruns eagerly.
        """
        return self.steps.run(lambda: self._step(batch), self.method, is_main_process())

    def _step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        self.schedule.step(self.iteration)
        batch = move_batch(batch, self.device, self.channels_last)
        self.module.train()
        with self.amp.autocast():
            terms = self.module(batch)
        loss = terms["loss"]
        if not all_true(bool(torch.isfinite(loss.detach())), self.device):  # every rank stops together
            values = {k: float(v.detach().float()) for k, v in terms.items()}
            last = self.work_dir / "last.pth"
            kept = (
                f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            )
            raise LadsegError(
                f"non-finite loss at iteration {self.iteration + 1}: {values}; stopped, {kept} "
                "(try a lower optim.lr or train.amp=none)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.amp.scaler
        scaler.scale(loss).backward()
        scaler.step(self.optimizer)
        scaler.update()
        terms = {**terms, **self.method.after_optimizer_step()}  # e.g. a discriminator's own step
        if self.ema is not None:
            self.ema.update(self.method.export_model())
        self.iteration += 1
        return {k: v.detach().float() for k, v in terms.items()}

    # -- validation and checkpoints --------------------------------------------------------
    def validate(self, input_fn: Any = None) -> SegMetrics:
        """Evaluate the deployed network on the val split (with the weight average swapped in, if any).

        ``input_fn`` (batch -> network input) defaults to the method's ``inference_input``.
        """
        averaged = self.ema.applied(self.method.export_model()) if self.ema is not None else nullcontext()
        with averaged, accel.eager():  # other image sizes would recompile
            broadcast_buffers(self.method)  # every shard evaluates rank 0's network (the one it saves)
            loader = build_loader_for(self.cfg, self.val_set, train=False)
            return evaluate(
                self.method.eval_model(), loader, self.num_classes, inference_settings(self.cfg),
                input_fn=input_fn or self.method.inference_input, device=self.device,
                class_names=getattr(self.val_set, "classes", None), autocast=self.amp.autocast,
            )  # fmt: skip

    def meta(self) -> dict[str, Any]:
        from ladseg import __version__

        palette = getattr(self.train_set, "palette", None)
        return {
            "format": CHECKPOINT_FORMAT,
            "ladseg_version": __version__,
            "spec": dict(self.method.export_model().spec),
            "class_names": list(getattr(self.train_set, "classes", []) or []),
            "palette": [list(map(int, c)) for c in palette] if palette is not None else None,
            "normalize": self.cfg.data.normalize,
            "config": self.cfg.to_dict(),
            "iteration": self.iteration,
            "metrics": dict(self.last_metrics),
        }

    def save(self, name: str, with_state: bool) -> None:
        if not is_main_process():
            return
        model = self.method.export_model()
        model_state = self.ema.averaged_state_dict(model) if self.ema is not None else model.state_dict()
        payload: dict[str, Any] = {"model": model_state, "meta": self.meta()}
        if with_state:
            payload["state"] = {
                "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.amp.scaler.state_dict(),
                "separate_optimizers": self.method.separate_optimizer_state(),
                "iteration": self.iteration,
                "best_miou": self.best_miou,
                # interrupted mid-validation: the state before it, so a resumed run redoes it alike
                "rng": self.rng_before_validation or get_rng_state(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
            }
        save_checkpoint(self.work_dir / name, payload)
        if name == "last.pth":
            self.saved_iteration = self.iteration

    def resume(self, path: Path) -> None:
        """Continue from a resume checkpoint (model/method, optimiser, schedule, iteration, RNG)."""
        payload = load_checkpoint(path)
        state = payload.get("state")
        if not isinstance(state, dict) or not isinstance(payload.get("meta"), dict):
            raise CheckpointError(f"{path} has no resume state (was it saved by 'ladseg train'?)")
        check_format(payload["meta"], path)
        check_model_spec(self.method.export_model(), payload["meta"].get("spec"), str(path))
        changes = changed_settings(payload["meta"].get("config"), self.cfg.to_dict())
        refuse_changes(changes, path)  # before any state is touched
        state = migrate_resume_state(state)  # module names of earlier versions
        self.method.load_state_dict(state["method"])
        configured = hyperparameters(self.optimizer)
        self.optimizer.load_state_dict(state["optimizer"])
        apply_hyperparameters(self.optimizer, configured)  # optim.* come from the config, as it says
        accel.set_fused(self.optimizer, self.device)  # this device's choice, not the saving run's
        self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.amp.scaler.load_state_dict(state["scaler"])
        fresh = self.method.load_separate_optimizer_state(state.get("separate_optimizers") or {})
        if fresh and is_main_process():
            note(f"{path} has no optimiser state for {', '.join(fresh)}; starting it fresh")
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on for a run that had none: the average starts at the resumed weights
                self.ema = WeightAverage(self.method.export_model(), self.ema.decay)
                if is_main_process():
                    note(f"{path} has no weight average; train.ema_decay starts one at this iteration")
        if (message := describe_changes(changes)) and is_main_process():
            note(message)
        self.iteration = self.saved_iteration = int(state["iteration"])
        self.best_miou = float(state.get("best_miou", -math.inf))
        self.last_metrics = dict(payload["meta"].get("metrics") or {})
        set_rng_state(state["rng"])
        if world_size() > 1:  # only rank 0's RNG was saved: give each rank its own stream again
            seed_everything(self.cfg.run.seed + rank() + world_size() * self.iteration)

    # -- the loop --------------------------------------------------------------------------
    def _prepare(self) -> None:
        last = self.work_dir / "last.pth"
        if self.cfg.train.resume and last.is_file():
            source = self._resume_last(
                last
            )  # before anything is written: an incompatible rerun changes nothing
            if is_main_process():
                drop_records_after(self.work_dir, self.iteration)  # logged after the checkpoint, redone now
                note(f"resumed {source} at iteration {self.iteration}")
        elif is_main_process():
            aside = set_aside_old_log(self.work_dir)
            if aside is not None:  # a used folder: say so, and start a fresh log
                why = "train.resume=false" if last.is_file() else f"no {last.name} to resume from"
                note(f"fresh start in {self.work_dir} ({why}); the previous log is kept as {aside.name}")
        if is_main_process():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.work_dir / "config.yaml")

    def _resume_last(self, last: Path) -> Path:
        """Resume from ``last.pth``; an empty or truncated one falls back to ``last.pth.prev`` (said so),
        which becomes ``last.pth`` again, so the next save cannot rotate the damaged file over it."""
        try:
            self.resume(last)
            return last
        except UnreadableCheckpoint as exc:
            prev = last.with_name(last.name + ".prev")
            if not prev.is_file():
                raise
            self.resume(prev)
            if is_main_process():
                aside = use_previous_checkpoint(last)
                note(f"{last} cannot be read ({exc.what}); kept as {aside.name}, resuming from {prev.name}")
            return prev

    def _catch_up_validation(self, logger: RunLogger) -> None:
        """After resuming: the validation due at this iteration runs unless the log already holds it.

        A run killed or interrupted between its checkpoint and that validation redoes it; a finished
        run started again reports its last validation instead of logging it a second time.
        """
        t = self.cfg.train
        i = self.iteration
        if i == 0 or not (i % t.val_interval == 0 or i == t.iters):
            return
        logged = [r for r in read_metrics(self.work_dir) if r.get("type") == "val" and r.get("iter") == i]
        if logged:
            self.last_metrics = {k: logged[-1][k] for k in ("aAcc", "mIoU", "mAcc") if k in logged[-1]}
            if isinstance(miou := logged[-1].get("mIoU"), (int, float)):  # logged after the checkpoint
                self.best_miou = max(self.best_miou, miou / 100)
        else:
            self._run_validation(logger)

    def _run_validation(self, logger: RunLogger) -> None:
        self.rng_before_validation = get_rng_state()  # kept if interrupted: see save()
        self._validate_and_log(logger)
        self.rng_before_validation = None

    def _validate_and_log(self, logger: RunLogger) -> None:
        metrics = self.validate()
        self.last_metrics = metrics.summary()
        record = metrics.to_dict()
        if self.method.label_input:
            # A label-assisted network is also scored with a zero label channel: the difference is the
            # label-use gap, the curve that shows whether and when the teacher starts to read its label.
            blind = 100 * self.validate(self.method.inference_input_without_label).miou
            record.update(mIoU_no_label=blind, label_gap=record["mIoU"] - blind)
        logger.log("val", self.iteration, record)
        if metrics.miou > self.best_miou:
            self.best_miou = metrics.miou
            self.save("best.pth", with_state=False)

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train to ``train.iters`` (resuming when possible); returns the final metrics.

        ``until`` stops early at that iteration (schedule unchanged) after saving ``last.pth``,
        e.g. to split a long run into time-limited jobs that each resume the previous one. The run
        folder is held for the whole run (a second run on it is refused); SIGINT/SIGTERM save
        ``last.pth`` and raise :class:`~ladseg.engine.interrupts.TrainingInterrupted`.
        """
        lock = RunFolderLock(self.work_dir) if is_main_process() else nullcontext()
        with lock, StopSignals(defer_always=world_size() > 1) as stops:
            try:
                return self._fit(until, stops)
            except KeyboardInterrupt:
                if not stops.requested:
                    raise
                raise self._interrupted(stops) from None

    def _interrupted(self, stops: StopSignals) -> TrainingInterrupted:
        """Save ``last.pth`` where the run stopped (unless a second signal cut a step short)."""
        last = self.work_dir / "last.pth"
        assert stops.signum is not None
        if stops.mid_step:
            kept = f"{last} (iteration {self.saved_iteration})" if self.saved_iteration is not None else None
            where = f"{kept} is kept" if kept else "no checkpoint was written yet"
            return TrainingInterrupted(
                f"stopped by a second {stops.name} in the middle of a step, without saving; {where}",
                stops.signum,
            )
        if self.saved_iteration != self.iteration and self.iteration > 0:
            self.save("last.pth", with_state=True)
        if self.saved_iteration is None:
            return TrainingInterrupted(
                f"interrupted by {stops.name} before the first step; nothing saved", stops.signum
            )
        return TrainingInterrupted(
            f"interrupted by {stops.name} at iteration {self.iteration}: saved {last}; run the same command "
            f"again to resume from iteration {self.saved_iteration}",
            stops.signum,
        )

    def _fit(self, until: int | None, stops: StopSignals) -> dict[str, Any]:
        self._prepare()
        t = self.cfg.train
        stop = min(t.iters, until) if until is not None else t.iters
        compile_it, message = accel.compile_decision(t.compile, stop - self.iteration, self.device)
        if message and is_main_process():  # after resume: decided on the steps this process still runs
            note(message)
        if compile_it and self.steps.mode == "eager":
            accel.compile_method(self.method)
            self.steps.mode = "first"
        logger = RunLogger(self.work_dir, t.tensorboard)
        bar = tqdm(
            total=t.iters, initial=self.iteration, desc=self.cfg.run.name, disable=not is_main_process()
        )
        sums: dict[str, Tensor] = {}
        count, interval_time, total_time, steps = 0, 0.0, 0.0, 0
        batches = self.training_batches() if self.iteration < stop else iter(())
        try:
            self._catch_up_validation(logger)
            while self.iteration < stop:
                tic = time.perf_counter()  # data + step; the finiteness check syncs the device
                with stops.deferred():
                    terms = self.train_step(next(batches))
                if world_size() > 1 and not all_true(not stops.requested, self.device):
                    stops.signum = stops.signum or signal.SIGTERM  # another rank was told to stop
                if stops.requested:
                    raise KeyboardInterrupt
                interval_time += time.perf_counter() - tic
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0) + v
                count += 1
                bar.update(1)
                i = self.iteration
                if i % t.log_interval == 0 or i == t.iters:
                    keys = list(sums)
                    means = all_reduce_mean(torch.stack([sums[k] for k in keys]) / count)  # over ranks
                    values = dict(zip(keys, means.tolist(), strict=True))
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    logger.log(
                        "train",
                        i,
                        {"lr": self.schedule.get_lr(), **values, "s_per_iter": interval_time / count},
                    )
                    total_time, steps = total_time + interval_time, steps + count
                    sums, count, interval_time = {}, 0, 0.0
                # the checkpoint first: a failing validation (bad file, out of memory) loses nothing
                if i % t.checkpoint_interval == 0 or i == stop:
                    self.save("last.pth", with_state=True)
                if i % t.val_interval == 0 or i == t.iters:
                    self._run_validation(logger)
        finally:
            bar.close()
            logger.close()
        return {
            "iteration": self.iteration,
            **self.last_metrics,
            "best_mIoU": 100 * self.best_miou if math.isfinite(self.best_miou) else None,
            "s_per_iter": total_time / steps if steps else None,
            "work_dir": str(self.work_dir),
        }


def train(cfg: Config) -> dict[str, Any]:
    """Build and run one training run from a config; returns the final metrics (percent).

    Under torchrun every process calls this; the process group is left at the end.
    """
    trainer = Trainer(cfg)
    try:
        return trainer.fit()
    finally:
        trainer.close()
