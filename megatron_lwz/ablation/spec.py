"""An ablation study declared in YAML (``examples/ablations/NAME.yaml``): variants × seeds of one job.

Each variant is a list of dotted overrides over one base recipe; every run is ``lwz <job> --config
BASE <base_overrides> <CLI overrides> <variant overrides> <seed overrides> logging.run_dir=…`` in its
own process. ``extends: FILE`` (relative to the study file) deep-merges a parent study under this one
(mappings merge, lists and scalars are replaced), so a user adds a study by writing only its
variants. The format is documented with examples in ``docs/ablations.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from megatron_lwz.config.base import ConfigError, deep_merge, from_dict, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
STUDY_DIR = ROOT / "examples" / "ablations"
DEFAULT_COMMAND = ["{python}", "-m", "megatron_lwz.cli.main", "{job}", "--config", "{config}"]


@dataclass(kw_only=True)
class PrepareStage:
    """One shared stage run once before the study (pretraining, a reward model, generated data)."""

    name: str
    """Stage name (its log file and done-marker are named after it)."""
    data: Literal["demo"] | None = None
    """'demo' = `lwz demo`'s data stage (generated corpus, tokenizer, .bin/.idx) into the shared dir."""
    job: str | None = None
    """`lwz` job run in a subprocess (pretrain, train-rm, …); null for a data stage."""
    config: str | None = None
    """Its recipe (relative to the repository root or absolute)."""
    overrides: list[str] = field(default_factory=list)
    """Dotted overrides of the stage."""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.job is None):
            raise ConfigError(f"prepare[{self.name}]: set exactly one of 'data' or 'job'")
        if self.job is not None and not self.config:
            raise ConfigError(f"prepare[{self.name}]: a job stage needs 'config'")


@dataclass(kw_only=True)
class VariantSpec:
    """One arm of the study."""

    overrides: list[str] = field(default_factory=list)
    """Dotted overrides that define the arm (applied after the base and CLI overrides)."""
    label: str = ""
    """Human-readable name used in the table and plots (default: the variant key)."""


@dataclass(kw_only=True)
class StudySpec:
    """Variants × seeds of one `lwz` job, and how the report compares them."""

    name: str
    """Study name (output folder ``<out>/<name>``)."""
    question: str = ""
    """What the study asks, one sentence (shown in the report)."""
    paper: str = ""
    """What the paper reports for it (shown next to the results)."""
    job: str = "grpo"
    """The `lwz` job every run executes."""
    base: str
    """Base recipe (relative to the repository root); `lwz ablate --config` replaces it."""
    base_overrides: list[str] = field(default_factory=list)
    """Overrides of the base shared by all variants (e.g. a shorter run)."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment of every subprocess; values may use {out} and {shared}."""
    shared_dir: str = "{out}/shared"
    """Directory of the shared prepare stages (``{shared}``)."""
    prepare: list[PrepareStage] = field(default_factory=list)
    """Stages run once (and skipped once done) before any run, in order."""
    command: list[str] = field(default_factory=lambda: list(DEFAULT_COMMAND))
    """Argv of one run or job stage ({python}, {job}, {config}); overrides are appended. On a cluster e.g.
    [bash, slurm/launch.sh, '{job}', '{config}'] inside one allocation."""
    seed_base: int = 1234
    """Seed i (0-based) of ``--seeds N`` has the value seed_base + i (seed 0 = the recipe's defaults)."""
    seed_overrides: list[str] = field(default_factory=lambda: ["rl.seed={seed}", "parallel.seed={seed}",
                                                               "prompts.shuffle_seed={seed}"])
    """Overrides that make a run seed-specific; variants with the same seed share them (paired design)."""
    run_dir_override: str = "logging.run_dir={run_dir}"
    """Where each run writes (``{run_dir}`` = <out>/<study>/<variant>/seed<seed>)."""
    baseline: str
    """The variant every other variant is compared against."""
    variants: dict[str, VariantSpec]
    """Variant key → its overrides (at least two)."""
    metrics: list[str] = field(default_factory=lambda: ["total", "length", "writing", "format", "in_range"])
    """Held-out metrics per prompt: a reward component, 'total' (Eq. 5 weights), 'in_range', 'answer_words'."""
    compare: Literal["last", "gain"] = "last"
    """What the paired tests compare: the last evaluation, or its gain over the first."""
    alpha: float = 0.05
    """Significance level of the stated verdicts (intervals are always 95 %)."""

    def __post_init__(self) -> None:
        if len(self.variants) < 2:
            raise ConfigError(f"study {self.name}: 'variants' needs at least two entries, got {list(self.variants)}")
        if self.baseline not in self.variants:
            raise ConfigError(f"study {self.name}: baseline {self.baseline!r} is not one of {list(self.variants)}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"study {self.name}: alpha must be in (0, 1), got {self.alpha}")
        for key, variant in self.variants.items():
            try:
                parse_overrides(variant.overrides)
            except ConfigError as err:
                raise ConfigError(f"study {self.name}: variants.{key}.overrides: {err}") from None
            if not variant.label:
                variant.label = key

    def label(self, variant: str) -> str:
        return self.variants[variant].label


def find_study(name: str) -> Path:
    """A study file: an existing path, or ``examples/ablations/<name>.yaml``."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"study file not found: {path}")
        return path
    path = STUDY_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in STUDY_DIR.glob("*.yaml") if not p.stem.startswith("_"))
        raise ConfigError(f"unknown study {name!r}: no {path}; known studies: {known}")
    return path


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise ConfigError(f"{path}: 'extends' cycle through {[str(p) for p in chain]}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = (path.parent / parent).resolve()
    if not parent_path.is_file():
        raise ConfigError(f"{path}: extends: {parent_path} does not exist")
    return deep_merge(_read(parent_path, (*chain, path)), data)


def load_study(name_or_path: str) -> StudySpec:
    """Parse and validate a study (its ``extends`` chain merged); errors name the file and the field."""
    path = find_study(name_or_path)
    data = _read(path.resolve())
    data.setdefault("name", path.stem)
    try:
        return from_dict(StudySpec, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
