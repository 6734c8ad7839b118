"""The one training loop. Methods compute losses; everything else — data streams, optimisation, schedule,
evaluation, checkpoints, resume and result files — happens here, identically for every method."""
from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from datasets.io import append_jsonl, atomic_write, atomic_write_json, read_jsonl, rewrite_jsonl
from benchmark.errors import NonFiniteLossError
from benchmark.numerics import apply as apply_numerics, label as numerics_label
from benchmark.train import runlock, summary
from benchmark.train.config import Config, ConfigError, save_yaml
from benchmark.train.data_plan import DataPlan, Streams, evaluate_val, plan_data, val_loader
from benchmark.train.model import build_model
from benchmark.train.run_setup import build_method, run_dir_for
from benchmark.train.run_state import (CHECKPOINT, final_evaluation, numerics_record, read_checkpoint,
                                       read_train_log, restore_rng_states, rng_states, threads_record)
from benchmark.train.sample_images import QUALITATIVE_FILE, QualitativeSaver
from benchmark.train.schedule import evaluation_interval, per_process_batch, poly_lr, run_facts
from benchmark.train.session import Session
from benchmark.train.split_lists import check_split_lists
from benchmark.train.tensorboard_log import TensorBoardLog
from datasets.catalog import get_spec
from methods.base import Batch, StepInfo

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
TRAIN_LOG_FILE = "train_log.jsonl"
# What --fresh discards (config.yaml is written again by every session).
RUN_FILES = (CHECKPOINT, SUMMARY_FILE, METRICS_FILE, TRAIN_LOG_FILE, QUALITATIVE_FILE)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is available")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: Config, progress: bool = True, dist: summary.DistInfo | None = None):
        self.cfg = cfg
        self.progress = progress
        self.dist = dist or summary.DistInfo()
        # Everything that can be checked without data comes first: a bad method or budget creates nothing.
        self.device = resolve_device(cfg.train.device) if not self.dist.enabled else self.dist.device
        # Before any tensor exists: the CPU libraries fix their instruction set at first use.
        self.numerics = apply_numerics(cfg.train.cpu_numerics, self.device.type, cfg.train.compile)
        self.method = build_method(cfg, get_spec(cfg.data.dataset).num_classes, self.dist.world_size)
        self._check_budget()
        self.plan: DataPlan = plan_data(cfg)
        cfg.data.split = self.plan.split
        self.split_lists = check_split_lists(self.plan.spec.name, self.plan.split_dir, self.plan.split,
                                             cfg.data.custom_splits, uses_unlabeled=bool(self.method.needs()))
        self.run_dir = run_dir_for(cfg)

    def _check_budget(self) -> None:
        train = self.cfg.train
        for key in ("iters", "epochs"):
            if getattr(train, key) < 0:
                raise ConfigError(f"train.{key} must be 0 or positive, got {getattr(train, key)}")
        if train.iters == 0 and train.epochs == 0:
            raise ConfigError("set train.iters or train.epochs to a positive number")
        self._autocast()   # validates train.amp

    # --- setup ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Model, method modules and optimizer; `fit` calls it, diagnostics (steptime) may too."""
        cfg = self.cfg
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        spec = self.plan.spec
        self.model = build_model(cfg.model, spec.num_classes).to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model = self.dist.wrap(self.model)
        if cfg.train.compile:   # in place: attributes (encode, decode) and state_dict keys stay as they are
            self.model.compile()
        self.extra = self.method.build_modules().to(self.device)
        self.dist.broadcast_parameters([self.model, self.extra])
        if self.dist.enabled:  # identical initial weights, but independent dropout/masking per process
            torch.manual_seed(cfg.train.seed + 1000 * self.dist.rank)
        head = list(self.model.head_parameters()) + list(self.extra.parameters())
        self.optimizer = torch.optim.SGD(
            [{"params": list(self.model.backbone_parameters()), "lr": cfg.train.lr},
             {"params": head, "lr": cfg.train.lr * cfg.train.lr_multi}],
            lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
        self.batch = per_process_batch(cfg.train, self.dist.world_size)
        self.labeled_batch = self.method.labeled_batch_size(self.batch)
        self._trainable = [p for group in self.optimizer.param_groups for p in group["params"]]

    def streams(self, start: int = 0) -> Streams:
        """The data streams of this run from step `start` (after `setup`); `train_step` draws from them."""
        return Streams(self.cfg, self.plan, self.method.needs(), self.labeled_batch, start,
                       self.dist.rank, self.dist.world_size)

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.cfg.train.iters > 0:
            return self.cfg.train.iters
        if self.cfg.train.epochs > 0:
            return self.cfg.train.epochs * steps_per_epoch
        raise ConfigError("set train.iters or train.epochs to a positive number")

    def precision(self) -> str:
        """fp32 (the official recipe) or bf16 (autocast): recorded in the summary, shown in the report."""
        amp = self.cfg.train.amp
        if amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"train.amp must be auto, bf16 or off, got {amp!r}")
        return "bf16" if amp == "bf16" or (amp == "auto" and self.device.type == "cuda") else "fp32"

    def _autocast(self):
        if self.precision() == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- checkpoints ------------------------------------------------------------------------------------
    def _save_checkpoint(self, step: int, best: dict | None, train_time: float, last: dict | None) -> None:
        if not self.cfg.output.save_checkpoint or not self.dist.is_main:
            return
        state = {
            "step": step, "model": self.model.state_dict(), "extra": self.extra.state_dict(),
            "optimizer": self.optimizer.state_dict(), "method": self.method.state_dict(), "best": best,
            "train_time": train_time, "config_hash": self.cfg.hash(), "last": last, "threads": self.threads,
            "cpu_numerics": self.numerics_sessions, "peak_memory_mb": self._peak_memory(),
            "rng": rng_states(),
        }
        atomic_write(self.run_dir / CHECKPOINT, lambda f: torch.save(state, f), mode="wb")
        self.peak_recorded = state["peak_memory_mb"]

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return None
        state = read_checkpoint(path, self.device, hint="delete it or pass --fresh")
        if state.get("config_hash") != self.cfg.hash():
            raise ConfigError(f"{path} was written by a different config; pass --fresh to restart this run, "
                              f"or use another output.results_dir")
        self.model.load_state_dict(state["model"])
        self.extra.load_state_dict(state["extra"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        restore_rng_states(state["rng"])
        return state

    def _truncate_logs(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be written again)."""
        for name, read in ((METRICS_FILE, read_jsonl), (TRAIN_LOG_FILE, read_train_log)):
            path = self.run_dir / name   # an old train log is rewritten under today's scalar names
            rewrite_jsonl(path, [r for r in read(path) if r.get("iter", 0) <= step])

    # --- the loop ---------------------------------------------------------------------------------------
    def fit(self, fresh: bool = False, wait: bool = False) -> dict[str, Any]:
        """Train (or resume, or return the finished summary). One process per run folder: another live one
        training it raises RunLockedError (benchmark/errors.py), or with `wait` is waited for."""
        if not self.dist.is_main:
            return self._fit(fresh)
        finished = None if fresh else self._finished_summary()
        if finished is not None:
            return finished
        with runlock.run_lock(self.run_dir, wait=wait):
            return self._fit(fresh)

    def _fit(self, fresh: bool) -> dict[str, Any]:
        if fresh and self.dist.is_main:
            for name in RUN_FILES:
                (self.run_dir / name).unlink(missing_ok=True)
        finished = self._finished_summary()
        if finished is not None:
            return finished
        self.setup()
        state = self._resume()
        streams = self.streams(state["step"] if state else 0)
        session = self._open_session(state, streams)
        self.model.train()
        for step in range(session.start, session.total):
            out = self._timed_train_step(streams, step, session)
            done = step + 1
            self._log_train_step(done, out, session)
            session.show(out)
            if session.evaluation_due(done):
                self._evaluate_and_keep_best(done, session)
                self._checkpoint(done, session)
            elif session.checkpoint_due(done):
                self._checkpoint(done, session)
        session.close()
        return self._finish(session)

    def _finished_summary(self) -> dict[str, Any] | None:
        """The run's summary if it is complete and of this config (nothing left to train), else None."""
        existing = summary.read_summary(self.run_dir / SUMMARY_FILE)
        if existing and existing.get("status") == "complete" and existing.get("config_hash") == self.cfg.hash():
            return existing
        return None

    def _resume(self) -> dict[str, Any] | None:
        """The checkpoint this session goes on from (None: step 0), with the run's records brought up to it."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_checkpoint()
        self.threads = threads_record(state, self.run_dir)
        self.numerics_sessions = numerics_record(state, self.run_dir, numerics_label(self.numerics))
        self.peak_recorded = state.get("peak_memory_mb") if state else None
        if self.dist.is_main:
            save_yaml(self.cfg.to_dict(), self.run_dir / "config.yaml")
            if state:
                self._truncate_logs(state["step"])
        return state

    def _open_session(self, state: dict[str, Any] | None, streams: Streams) -> Session:
        """What this session's loop needs: its steps and their evaluations, the validation data, the live
        logs and the progress bar."""
        start = state["step"] if state else 0
        total = self.total_steps(streams.steps_per_epoch)
        every = evaluation_interval(self.cfg.eval, total, streams.steps_per_epoch)
        if state and self.dist.is_main:
            print(f"resuming {self.run_dir} from its checkpoint at step {start}/{total}", file=sys.stderr)
        facts = run_facts(self.cfg, world_size=self.dist.world_size, labeled_batch=self.labeled_batch,
                          batch=self.batch, every=every, total=total, precision=self.precision())
        self._val = val_loader(self.cfg, self.plan, self.dist.rank, self.dist.world_size)
        qualitative = QualitativeSaver(self.cfg, self.plan) if self.dist.is_main else None
        live = TensorBoardLog(self.cfg.train.tensorboard and self.dist.is_main, self.run_dir)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        bar = tqdm(total=total, initial=start, disable=not (self.progress and self.dist.is_main),
                   desc=f"{self.cfg.method['name']} {self.plan.spec.name}/{self.plan.split} seed{self.cfg.train.seed}",
                   dynamic_ncols=True, leave=False)
        # A checkpoint at the last step already holds the last evaluation (rebuilding the summary adds nothing).
        last = final_evaluation(state, self.run_dir) if state and start >= total else None
        return Session(start=start, total=total, every=every, checkpoint_every=self.cfg.train.checkpoint_every,
                       images_per_step=streams.images_per_step,
                       facts=facts, best=state["best"] if state else None, last=last,
                       train_time=state["train_time"] if state else 0.0,
                       checkpoint_step=start if state else None, qualitative=qualitative, live=live, bar=bar)

    def _timed_train_step(self, streams: Streams, step: int, session: Session) -> dict[str, float]:
        tick = time.perf_counter()
        try:
            out = self.train_step(streams, step, session.total)
        except NonFiniteLossError as exc:
            self._record_divergence(exc, step, session)
            raise
        session.step_seconds += time.perf_counter() - tick
        session.steps += 1
        return out

    def _record_divergence(self, exc: NonFiniteLossError, step: int, session: Session) -> None:
        """Recorded as diverged (mIoU NaN) so the report shows it; the checkpoint before it is kept."""
        kept = (f"the checkpoint at step {session.checkpoint_step} is kept" if session.checkpoint_step is not None
                and (self.run_dir / CHECKPOINT).exists() else "no checkpoint had been written yet")
        exc.args = (f"{exc.args[0]}; {kept}",)
        if self.dist.is_main:
            nan = {"iter": step + 1, "miou": None, "per_class": {}}
            atomic_write_json(self.run_dir / SUMMARY_FILE, {**self._summary(
                nan, nan, session, session.elapsed(), session.steps and session.step_seconds / session.steps),
                "status": "diverged"})

    def _log_train_step(self, done: int, out: dict[str, float], session: Session) -> None:
        if self.dist.is_main and (done % self.cfg.train.log_every == 0 or done == session.total):
            append_jsonl(self.run_dir / TRAIN_LOG_FILE, {"iter": done, **out})
            session.live.train(done, out)

    def _evaluate_and_keep_best(self, done: int, session: Session) -> None:
        session.last = self._evaluate(done, session.elapsed())
        session.live.evaluation(session.last)
        best = session.best
        if best is None or session.last["miou"] > best["miou"] or math.isnan(best["miou"]):
            session.best = session.last
            if session.qualitative is not None:   # the report's figures show the best-on-val predictions
                session.qualitative.save(self.model, self.run_dir, done, self.device)

    def _checkpoint(self, done: int, session: Session) -> None:
        self._save_checkpoint(done, session.best, session.elapsed(), session.last)
        if self.cfg.output.save_checkpoint:
            session.checkpoint_step = done

    def _finish(self, session: Session) -> dict[str, Any]:
        if session.last is None:  # resumed from a checkpoint written at the very last step
            session.last = self._evaluate(session.total, session.train_time)
        train_time = session.elapsed()
        # train_time holds step time only (restored from the checkpoint), so this is the whole run's mean step.
        record = self._summary(session.best, session.last, session, train_time, train_time / session.total)
        if self.dist.is_main:
            atomic_write_json(self.run_dir / SUMMARY_FILE, record)
        return record

    def _peak_memory(self) -> float:
        """This session's peak, or an earlier session's when that was higher (carried in the checkpoint)."""
        return round(max(summary.peak_memory_mb(self.device), self.peak_recorded or 0.0), 1)

    def _summary(self, best: dict, last: dict, session: Session, train_time: float,
                 step_time: float) -> dict[str, Any]:
        # The peak as the last checkpoint recorded it, so a summary rebuilt from the final checkpoint (a
        # session that trains nothing) states the same figure; measured now only where none was written.
        peak = self.peak_recorded if self.peak_recorded is not None else self._peak_memory()
        return {**summary.summary(self.cfg, self.method, self.plan, best, last, session.total, train_time,
                                  step_time, session.images_per_step * self.dist.world_size, self.device,
                                  session.facts),
                "split_lists": self.split_lists, "threads": self.threads, "peak_memory_mb": peak,
                "cpu_numerics": {**self.numerics, "sessions": self.numerics_sessions}}

    def train_step(self, streams: Streams, step: int, total: int) -> dict[str, float]:
        """One optimizer step on the next batch of `streams`; returns the logged record."""
        raw = streams.next()
        batch = Batch(labeled=self._to_device(raw["labeled"]), unlabeled=self._to_device(raw.get("unlabeled")),
                      mix=self._to_device(raw.get("mix")))
        info = StepInfo(step=step, total_steps=total)
        with self._autocast():
            out = self.method.losses(self.model, batch, info)
        for name, term in {**out.terms, "total": out.total}.items():
            if not torch.isfinite(term.detach()).all():
                raise NonFiniteLossError(
                    f"loss term {name} of method {self.method.name} is {term.item()} at step {step + 1} "
                    f"(lower train.lr, check the data, or try train.amp=off)")
        self.optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        self.dist.average_gradients(self._trainable)
        self.optimizer.step()
        # As the official loop: after step i the lr becomes base · (1 − i/total)^0.9 (steps 0 and 1 at base).
        lr = poly_lr(self.cfg.train.lr, step, total, self.cfg.train.poly_power)
        self.optimizer.param_groups[0]["lr"] = lr
        self.optimizer.param_groups[1]["lr"] = lr * self.cfg.train.lr_multi
        self.method.after_step(self.model, info)
        record = {"loss": float(out.total.detach()), "lr": lr}
        record.update({k: float(v.detach()) for k, v in out.terms.items()})
        record.update(out.scalars)
        return record

    def _to_device(self, tensors: dict | None) -> dict | None:
        if tensors is None:
            return None
        # Images (4-d floats) follow the model's memory format; non_blocking overlaps copies from pinned memory.
        layout = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
        return {k: (v.to(self.device, non_blocking=True, memory_format=layout) if torch.is_tensor(v) and v.dim() == 4
                    else v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v)
                for k, v in tensors.items()}

    def _evaluate(self, step: int, elapsed: float) -> dict[str, Any]:
        result = evaluate_val(self.model, self._val, self.cfg, self.plan, self.device, distributed=self.dist.enabled)
        record = {"iter": step, "miou": float(result["miou"]),
                  "per_class": {k: float(v) for k, v in result["per_class"].items()}, "elapsed_s": elapsed}
        if self.dist.is_main:
            append_jsonl(self.run_dir / METRICS_FILE, record)
        self.model.train()
        return record
