"""What the report reads a results tree into: a run (`RunRecord`, one seed of one cell), an imported official
log (`ReferenceRecord`), a folder it had to skip (`Skipped`), and the whole store. Reading: results_store.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.train.run_setup import run_name


@dataclass(frozen=True)
class EvalPoint:
    iter: int | None
    miou: float                     # NaN when the run diverged
    per_class: dict[str, float]


@dataclass
class RunRecord:
    path: Path
    dataset: str
    split: str
    method: str
    variant: str | None
    seed: int
    status: str
    best: EvalPoint
    last: EvalPoint
    components: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    iters: int | None = None
    wall_time_s: float | None = None
    step_time_s: float | None = None
    images_per_s: float | None = None
    peak_memory_mb: float | None = None
    device: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    config_hash: str | None = None
    backbone: str | None = None
    from_paper_description: bool = False
    params: dict[str, Any] = field(default_factory=dict)       # resolved method parameters, when recorded
    class_names: list[str] = field(default_factory=list)      # evaluation order of the classes
    same_run_as: str | None = None    # label of the run this variant reuses (identical training), if any
    custom_splits: bool = False       # trained on split lists other than the pinned official ones
    custom_data: bool = False         # embedded data whose digest differs from the pinned one, accepted by the user
    # The recipe as trained (absent from summaries written before these were recorded)
    world_size: int | None = None
    labeled_total_batch_size: int | None = None
    labeled_batch_per_process: int | None = None
    evaluations: int | None = None                             # how many evaluations "best on val" chose from
    precision: str | None = None                               # fp32 (official) | bf16
    reference: bool = False           # a grid.references run (e.g. supervised with all labels)
    num_labeled: int | None = None    # labeled images of the split, when recorded
    user_supplied: bool = False       # a plugin method, not one of the suite's (benchmark/plugins.py)
    base: str | None = None           # the method it declares it builds on (compared with in the report)
    display_name: str | None = None   # how the method names itself (Method.display_name), when recorded
    significance_baseline: bool = False   # every method is tested against it (Method.significance_baseline)
    numerics: str | None = None       # CPU numerics in force (benchmark.numerics.label; " + " when a resume mixed)
    # summary["data_draw"]: "per_seed" (seed k trained on draw k, shared by every method: comparisons pair by
    # seed) | "single" (one draw for every seed) | None (not recorded); the digest tells two draws apart
    draw_design: str | None = None
    draw_digest: str | None = None

    @property
    def label(self) -> str:
        """The run name as the trainer writes it: method, or method__variant for ablation variants."""
        return run_name(self.method, self.variant)


@dataclass
class ReferenceRecord:
    """An official training log imported by `import-log` (one run, so n = 1)."""
    path: Path
    name: str
    dataset: str
    split: str
    method: str
    backbone: str | None
    best: EvalPoint
    last: EvalPoint
    curve: list[tuple[int, float]]            # (epoch, mIoU)
    source_log: str


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass
class ResultsStore:
    root: Path
    runs: list[RunRecord]
    references: list[ReferenceRecord]
    skipped: list[Skipped]

    def datasets(self) -> list[str]:
        return sorted({r.dataset for r in self.runs} | {r.dataset for r in self.references})
