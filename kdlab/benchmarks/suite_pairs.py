"""Suites with ``pairs:``: every method on every teacher -> student pair, from the recipes' own teachers.

Planning (:func:`plan_pairs`): for each selected pair and method, the method's config
template names the recipe; a missing recipe makes that (method, pair) *absent*. Pairs whose
config and overrides come out the same (``student/{student}.yaml`` for two pairs with one
student) share one run. Each distinct ``teacher.checkpoint`` of the recipes is one
:class:`TeacherEval`: evaluated once (``evaluate_pretrained``) and linked into
``<out>/teachers/<label>/``, where the students read it (so SSKD's head lands there, never
beside the shared weights). Nothing is fine-tuned.

Layout of the output folder (besides what :mod:`kdlab.benchmarks.suite` writes)::

    <out>/teachers/<label>/<file>            link to the recipe's teacher weights
    <out>/teachers/<label>/pretrained.json   its evaluation on the test split
    <out>/runs/<method>/<pair or student>/seed<k>/
    <out>/teacher_cache/<label>/<digest>/seed<k>/   (methods with teacher_cache: true)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Optional

from kdlab.benchmarks.suite_manifest import MethodSpec, PairSpec, SuiteError, SuiteManifest, select_pairs
from kdlab.benchmarks.suite_plan import (
    AbsentRun,
    SuiteOptions,
    SuitePlan,
    TeacherEval,
    cache_digest,
    data_override,
    distinct,
    make_link,
    output_folder,
    override_tail,
    resolve_existing,
    seeds_and_jobs,
    wanted_methods,
)
from kdlab.benchmarks.suite_runs import CACHE_LINK, PlannedRun, shown_path, task_cache, task_prerequisites, task_pretrained, task_run
from kdlab.benchmarks.suite_schedule import Task

TEACHERS_DIR = "teachers"
_TEACHER_HINT = ("Each recipe's teacher.checkpoint names its pretrained teacher: put the file there, or run from the "
                 "directory the path is relative to.")


@dataclass
class _Draft:
    """One run of a method (all its seeds), before the seeds are laid out."""

    spec: MethodSpec
    config: Path
    head: tuple[str, ...]  # overrides before trainer.out_dir / trainer.seed
    instance: str
    pairs: list[str]
    student: str  # the recipe's model.name
    teacher: Optional[str] = None
    cache_digest: str = ""


# ---------------------------------------------------------------------------------------------- planning
def plan_pairs(manifest: SuiteManifest, options: SuiteOptions) -> SuitePlan:
    """The plan of a suite with ``pairs:`` (see the module docstring); problems go to ``plan.problems``."""
    if options.teacher_checkpoint is not None:
        raise SuiteError("--teacher-checkpoint: a suite with pairs: distils from each recipe's own teacher.checkpoint; "
                         "put the teacher files where the recipes name them (kdlab bench suite --dry-run lists them)")
    seeds, jobs = seeds_and_jobs(manifest, options)
    methods = wanted_methods(manifest, options)
    wanted = options.pairs if options.pairs is not None else (manifest.mini.pairs if options.mini else None)
    pairs = select_pairs(manifest, wanted)
    evaluate = manifest.mini.evaluate_pretrained if options.mini else manifest.teacher.evaluate_pretrained
    plan = SuitePlan(manifest, options, output_folder(manifest, options), seeds, jobs, methods, None, (), evaluate,
                     None, pairs=pairs)
    drafts = _drafts(plan)
    for seed in range(plan.seeds):
        for draft in drafts:
            plan.runs.append(_run(plan, draft, seed))
    return plan


def _drafts(plan: SuitePlan) -> list[_Draft]:
    """One draft per (method, instance), in the order of the first pair that needs it."""
    tail = override_tail(plan.manifest, plan.options)
    drafts: dict[tuple[str, str], _Draft] = {}
    for pair in plan.pairs:
        for spec in plan.methods:
            config = spec.config_for(pair)
            if not config.is_file():
                plan.absent.append(AbsentRun(spec.name, pair.name, config))
                continue
            key = (spec.name, spec.instance(pair))
            if key in drafts:
                _share(plan, drafts[key], pair)
                continue
            draft = _draft(plan, spec, pair, config, tail)
            if draft is not None:
                drafts[key] = draft
    return list(drafts.values())


def _share(plan: SuitePlan, draft: _Draft, pair: PairSpec) -> None:
    """``pair`` reports ``draft``'s run too (same config, same overrides)."""
    if draft.student != pair.student:
        plan.problems.invalid.append(f"method {draft.spec.name} on {pair.name} ({shown_path(draft.config)}): "
                                     f"model.name={draft.student} but the pair's student is {pair.student}")
        return
    draft.pairs.append(pair.name)
    if draft.teacher is not None and pair.name not in plan.teacher(draft.teacher).pairs:
        plan.teacher(draft.teacher).pairs.append(pair.name)


def _draft(plan: SuitePlan, spec: MethodSpec, pair: PairSpec, config: Path, tail: tuple[str, ...]) -> Optional[_Draft]:
    from kdlab.config import ConfigError, load_config

    user = f"{spec.name}/{pair.name}"
    head = (*plan.manifest.overrides, *spec.overrides_for(pair), *tail)
    try:
        head = distinct((*head, data_override(config, head, plan.problems, user)))
        cfg = load_config(config, head)
        distilling = cfg.teacher.name is not None or cfg.teacher.checkpoint is not None
        mismatch = _mismatch(cfg, pair, distilling)
        if mismatch:
            raise ConfigError(mismatch)
        draft = _Draft(spec, config, head, spec.instance(pair), [pair.name], cfg.model.name)
        if distilling:
            draft.teacher = _teacher(plan, cfg, pair, config, head, user)
            draft.cache_digest = cache_digest(cfg)
    except ConfigError as err:
        plan.problems.invalid.append(f"method {spec.name} on {pair.name} ({shown_path(config)}): {err}")
        return None
    return draft


def _mismatch(cfg: Any, pair: PairSpec, distilling: bool) -> str:
    """Why the recipe does not train the pair's student from the pair's teacher ('' when it does)."""
    if cfg.model.name != pair.student:
        return f"model.name={cfg.model.name} but the pair's student is {pair.student}"
    if distilling and cfg.teacher.name is not None and cfg.teacher.name != pair.teacher:
        return f"teacher.name={cfg.teacher.name} but the pair's teacher is {pair.teacher}"
    return ""


def _teacher(plan: SuitePlan, cfg: Any, pair: PairSpec, config: Path, head: tuple[str, ...], user: str) -> str:
    """The label of the recipe's teacher; a new distinct teacher is added to ``plan.teachers``."""
    from kdlab.config import ConfigError

    raw = cfg.teacher.checkpoint
    if not raw:
        raise ConfigError("teacher.checkpoint is not set (the suite distils from each recipe's own teacher)")
    checkpoint = resolve_existing(raw, "teacher.checkpoint", shown_path(config), _TEACHER_HINT, plan.problems, user)
    for known in plan.teachers:
        if known.checkpoint == checkpoint:
            if pair.name not in known.pairs:
                known.pairs.append(pair.name)
            return known.label
    label = _unique_label(plan, cfg.teacher.name or pair.teacher)
    link = plan.out_dir / TEACHERS_DIR / label / checkpoint.name
    plan.teachers.append(TeacherEval(label, checkpoint, link, config, _eval_overrides(cfg, checkpoint, head), [pair.name]))
    return label


def _unique_label(plan: SuitePlan, name: str) -> str:
    taken = {t.label for t in plan.teachers}
    label, n = name, 1
    while label in taken:
        n += 1
        label = f"{name}-{n}"
    return label


def _eval_overrides(cfg: Any, checkpoint: Path, head: tuple[str, ...]) -> tuple[str, ...]:
    """The recipe turned into the teacher's own evaluation (``kdlab eval``): the teacher as the model, CE only."""
    from kdlab.config.teacher_source import resolve_teacher_source

    name, kwargs, classes = cfg.teacher.name, dict(cfg.teacher.kwargs), cfg.teacher.num_classes
    if checkpoint.exists():  # a kdlab checkpoint or run folder knows its architecture
        name, _, kwargs, classes = resolve_teacher_source(cfg)
    extra = [
        f"model.name={name}", f"model.kwargs={json.dumps(kwargs)}",
        f"model.num_classes={classes if classes is not None else 'null'}", f"model.checkpoint={checkpoint}",
        "teacher.name=null", "teacher.checkpoint=null", "teacher.kwargs={}", "teacher.num_classes=null",
        "distill.terms=[{name: ce, weight: 1.0}]", "distill.labels=true",
        "eval.knn=false", "eval.linear_probe=false", "eval.manifold=false",
    ]
    if cfg.teacher.mean is not None:
        extra.append(f"data.mean={json.dumps(cfg.teacher.mean)}")
    if cfg.teacher.std is not None:
        extra.append(f"data.std={json.dumps(cfg.teacher.std)}")
    return (*head, *extra)


def _run(plan: SuitePlan, draft: _Draft, seed: int) -> PlannedRun:
    spec = draft.spec
    run_dir = plan.out_dir / "runs" / spec.name / draft.instance / f"seed{seed}"
    overrides = [*draft.head, f"trainer.out_dir={run_dir}", f"trainer.seed={seed}"]
    cache = None
    if draft.teacher is not None:
        overrides.append(f"teacher.checkpoint={plan.teacher(draft.teacher).link}")
        if spec.teacher_cache and plan.options.teacher_cache:
            cache = plan.out_dir / "teacher_cache" / draft.teacher / draft.cache_digest / f"seed{seed}"
            overrides.append(f"distill.teacher_cache={run_dir / CACHE_LINK}")
    return PlannedRun(spec.name, seed, draft.config, run_dir, tuple(overrides), cache, tuple(draft.pairs),
                      draft.instance, draft.teacher)


# ---------------------------------------------------------------------------------------------- tasks
def link_teachers(plan: SuitePlan) -> set[str]:
    """Create ``<out>/teachers/<label>/<file>`` for every teacher; the labels whose link is new or changed."""
    return {t.label for t in plan.teachers if make_link(t.link, t.checkpoint)}


def cache_key(plan: SuitePlan, run: PlannedRun) -> str:
    assert run.cache is not None
    return "cache:" + run.cache.relative_to(plan.out_dir / "teacher_cache").as_posix()


def build_pair_tasks(plan: SuitePlan, stale_teachers: Collection[str] = ()) -> list[Task]:
    """The tasks of a suite with pairs, in start order: teacher evaluations, prerequisites, then seed by seed.

    ``stale_teachers``: labels whose weights changed since an earlier invocation; their runs are retrained.
    """
    tasks: list[Task] = []
    if plan.evaluate_pretrained:
        for teacher in plan.teachers:
            tasks.append(Task(f"pretrained:{teacher.label}", f"teacher {teacher.label} evaluation", task_pretrained,
                              (teacher.config, teacher.overrides, teacher.checkpoint, teacher.out_file)))
    for group in plan.with_prerequisites:
        members = tuple(r for r in plan.runs if r.prerequisite_group == group)
        tasks.append(Task(f"prerequisites:{group}", f"{group}: runs its terms need first", task_prerequisites, members))
    keys = {task.key for task in tasks}
    for seed in range(plan.seeds):
        for run in (r for r in plan.runs if r.seed == seed):
            deps = []
            if run.cache is not None:
                key = cache_key(plan, run)
                if key not in keys:
                    keys.add(key)
                    tasks.append(Task(key, f"teacher cache {key[len('cache:'):]}", task_cache,
                                      (run, True, plan.options.verbose)))
                deps.append(key)
            if run.prerequisite_group in plan.with_prerequisites:
                deps.append(f"prerequisites:{run.prerequisite_group}")
            tasks.append(Task(run.key, run.label, task_run, (run, run.teacher not in stale_teachers), tuple(deps)))
    return tasks


def summary_line(plan: SuitePlan) -> str:
    per_seed = [r for r in plan.runs if r.seed == 0]
    shared = sum(len(r.pairs) - 1 for r in per_seed)
    return (f"suite {plan.manifest.name}: {len(plan.methods)} method(s) x {len(plan.pairs)} pair(s) x {plan.seeds} "
            f"seed(s): {len(plan.runs)} run(s) ({len(per_seed)} per seed; {len(plan.absent)} (method, pair) absent, "
            f"{shared} reported in a second pair), {len(plan.teachers)} teacher(s), {plan.jobs} job(s), into "
            f"{plan.out_dir}")
