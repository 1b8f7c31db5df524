"""Every config key the schema accepts is read by something in kdlab/ (outside the schema itself).

A key nothing reads is a promise the library does not keep: the user sets it and nothing changes. The check
is static (Python's ``ast``, nothing runs) and ties each read to its section, so that ``optim.name`` is not
"read" because some ``data.name`` is:

* a config expression is tied to a section path: ``<tied>.data`` (or ``<tied>["data"]``,
  ``getattr(<tied>, "data")``, ``to_dict(<tied>)``) is ``data``; a name is tied by its annotation
  (``cfg: ScheduleConfig``, ``cfg: Config``), by an assignment from a tied expression (``optim = cfg.optim``),
  or by the calls that pass a tied argument to that parameter (``build_optimizer(cfg.optim, ...)`` ties
  ``build_optimizer``'s first parameter to ``optim``; only for a function name defined once in kdlab/);
* otherwise ``cfg`` / ``config`` / ``self.cfg`` / ``run.config`` are a config of unknown section: ``.data``
  of it is ``data``, ``.label_noise`` the one section of that name (``data.label_noise``);
* a key ``SECTION.LEAF`` is read when ``LEAF`` is read (attribute load, subscript, ``.get`` or ``getattr``)
  on an expression tied to ``SECTION``, or, for a leaf no other key has (``synthetic_train``), on any
  config expression (of another section, or of one not known).

Strings that merely name a key (error messages, docstrings, sets such as ``OPERATIONAL_KEYS``) are not reads.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import typing
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

from kdlab.config import all_keys
from kdlab.config.schema import Config

KDLAB = Path(__file__).resolve().parents[2] / "kdlab"
SCHEMA_FILE = KDLAB / "config" / "schema.py"
CONFIG_NAMES = {"cfg", "config"}  # a variable or attribute of these names holds some part of a Config
WEAK = "?"  # the tie of such a name: a config, of a section not known
PASS_THROUGH = {"to_dict", "asdict", "deepcopy", "replace", "with_views", "with_task_defaults"}


def section_classes(cls: type = Config, path: str = "") -> dict[str, str]:
    """Schema dataclass name -> its section path (``DataConfig`` -> ``data``, ``Config`` -> ``""``)."""
    out = {cls.__name__: path}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out.update(section_classes(hint, f"{path}.{f.name}".lstrip(".")))
    # one of several teachers (``teachers:``) has every ``teacher.*`` key
    if cls is Config:
        out["TeacherEntry"] = "teacher"
    return out


def split_key(key: str) -> tuple[str, str]:
    section, _, leaf = key.rpartition(".")
    return section, leaf


class Reads:
    """What the analysed sources read: (section path, leaf) pairs, and leaves read of a config of unknown section."""

    def __init__(self, sections: set[str], classes: dict[str, str]) -> None:
        self.sections = sections
        self.classes = classes
        self.tied: set[tuple[str, str]] = set()
        self.weak: set[str] = set()
        self.param_ties: dict[tuple[str, object], set[str]] = {}
        self.found_ties: dict[tuple[str, object], set[str]] = {}

    def child(self, tie: Optional[str], leaf: str) -> Optional[str]:
        """The section ``<tie>.<leaf>`` is, if any (of a weak tie: the one section ending in ``leaf``)."""
        if leaf in CONFIG_NAMES:
            return WEAK
        if tie is None:
            return None
        if tie == WEAK:
            if leaf in self.sections:
                return leaf
            ending = [s for s in self.sections if s.endswith(f".{leaf}")]
            return ending[0] if len(ending) == 1 else None
        path = f"{tie}.{leaf}".lstrip(".")
        return path if path in self.sections else None

    def read(self, tie: Optional[str], leaf: str) -> None:
        if tie == WEAK:
            self.weak.add(leaf)
        elif tie is not None:
            self.tied.add((tie, leaf))


class FunctionScan(ast.NodeVisitor):
    """Walks one function (or a module's top level) with its environment of tied names."""

    def __init__(self, reads: Reads, callables: set[str], env: dict[str, str]) -> None:
        self.reads = reads
        self.callables = callables  # the names calls are followed into (defined once)
        self.env = dict(env)

    # ------------------------------------------------------------ ties of expressions
    def tie(self, node: ast.AST) -> Optional[str]:
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            return WEAK if node.id in CONFIG_NAMES else None
        if isinstance(node, ast.Attribute):
            return self.reads.child(self.tie(node.value), node.attr)
        if isinstance(node, ast.Subscript) and _text_key(node) is not None:
            return self.reads.child(self.tie(node.value), _text_key(node))  # type: ignore[arg-type]
        if isinstance(node, ast.Call) and node.args:
            name = _callee(node)
            if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                return self.reads.child(self.tie(node.args[0]), str(node.args[1].value))
            if name in PASS_THROUGH:
                return self.tie(node.args[0])
        if isinstance(node, ast.BoolOp):  # ``cfg.teacher or default``
            ties = [self.tie(v) for v in node.values]
            return next((t for t in ties if t is not None), None)
        return None

    # ------------------------------------------------------------------ visitors
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scan_function(self.reads, self.callables, node, self.env)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name if item.name == "__init__" else item.name
                scan_function(self.reads, self.callables, item, self.env, call_name=name)
            else:
                self.visit(item)

    def visit_Assign(self, node: ast.Assign) -> None:
        tie = self.tie(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and tie is not None:
                self.env[target.id] = tie
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name) and node.value is not None and self.tie(node.value) is not None:
            self.env[node.target.id] = self.tie(node.value)  # type: ignore[assignment]
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):
            self.reads.read(self.tie(node.value), node.attr)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        key = _text_key(node)
        if isinstance(node.ctx, ast.Load) and key is not None:
            self.reads.read(self.tie(node.value), key)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        literal = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name == "getattr" and literal and node.args:
            self.reads.read(self.tie(node.args[0]), literal[0])
        if name == "get" and isinstance(node.func, ast.Attribute) and node.args:
            key = node.args[0]
            tie = self.tie(node.func.value)
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.reads.read(tie, key.value)
        if name in self.callables:
            for index, arg in enumerate(node.args):
                tie = self.tie(arg)
                if tie not in (None, WEAK):
                    self.reads.found_ties.setdefault((name, index), set()).add(tie)
            for keyword in node.keywords:
                tie = self.tie(keyword.value) if keyword.arg else None
                if tie not in (None, WEAK):
                    self.reads.found_ties.setdefault((name, keyword.arg), set()).add(tie)  # type: ignore[arg-type]
        self.generic_visit(node)


def _text_key(node: ast.Subscript) -> Optional[str]:
    """``"data"`` of ``x["data"]``, None for any other subscript."""
    key = node.slice
    return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None


def _callee(node: ast.Call) -> Optional[str]:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _annotation_tie(annotation: Optional[ast.AST], classes: dict[str, str]) -> Optional[str]:
    if annotation is None:
        return None
    names = [n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)]
    names += [n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)]
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        names += [part.strip("[]") for part in annotation.value.replace("[", " ").split()]
    return next((classes[n] for n in names if n in classes), None)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    return [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]


def scan_function(
    reads: Reads, callables: set[str], node: ast.FunctionDef | ast.AsyncFunctionDef,
    outer: dict[str, str], call_name: Optional[str] = None,
) -> None:
    """Scan ``node``'s body; its parameters are tied by annotation or by the calls seen (under ``call_name``)."""
    env = dict(outer)
    params = _parameters(node)
    positional = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    offset = 1 if positional[:1] in (["self"], ["cls"]) else 0
    name = call_name or node.name
    for arg in params:
        tie = _annotation_tie(arg.annotation, reads.classes)
        index = positional.index(arg.arg) - offset if arg.arg in positional else None
        inferred = reads.param_ties.get((name, index), set()) | reads.param_ties.get((name, arg.arg), set())
        if tie is None and len(inferred) == 1:
            tie = next(iter(inferred))
        if tie is not None:
            env[arg.arg] = tie
        elif arg.arg in env:
            del env[arg.arg]  # a parameter shadows the outer name
    scan = FunctionScan(reads, callables, env)
    for _ in range(2):  # flow-insensitive: a name assigned below its first use is tied on the second pass
        for statement in node.body:
            scan.visit(statement)


@functools.lru_cache(maxsize=None)
def _parse(path: str, text: str) -> ast.Module:
    return ast.parse(text, filename=path)  # the visitors never change a tree: shared between analyses


def collect_reads(sources: dict[str, str]) -> Reads:
    """Everything ``sources`` (path -> Python text) reads of a config."""
    classes = section_classes()
    trees = {path: _parse(path, text) for path, text in sources.items()}
    defined: Counter[str] = Counter()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined[node.name] += 1
    # calls pass ties to parameters only of functions whose name is defined once (no guessing which one)
    callables = {name for name, count in defined.items() if count == 1}
    reads = Reads(set(classes.values()) - {""}, classes)
    for _ in range(6):  # a tie passed through a chain of calls needs one round per call
        reads.tied, reads.weak, reads.found_ties = set(), set(), {}
        for tree in trees.values():
            FunctionScan(reads, callables, {}).visit(tree)
        if reads.found_ties == reads.param_ties:
            break
        reads.param_ties = reads.found_ties
    return reads


def unread_keys(reads: Reads, keys: Iterable[str]) -> list[str]:
    """The keys of ``keys`` that ``reads`` shows no read of (``SECTION.LEAF``: see the module docstring)."""
    keys = list(keys)
    leaf_counts = Counter(split_key(k)[1] for k in keys)
    anywhere = reads.weak | {leaf for _, leaf in reads.tied}
    unread = []
    for key in keys:
        section, leaf = split_key(key)
        if (section, leaf) in reads.tied:
            continue
        if leaf_counts[leaf] == 1 and leaf in anywhere:
            continue
        unread.append(key)
    return unread


def kdlab_sources() -> dict[str, str]:
    return {
        str(path.relative_to(KDLAB.parent)): path.read_text(encoding="utf-8")
        for path in sorted(KDLAB.rglob("*.py"))
        if path != SCHEMA_FILE
    }


# ----------------------------------------------------------------------------- tests


@functools.lru_cache(maxsize=1)
def kdlab_reads() -> Reads:
    return collect_reads(kdlab_sources())


def test_every_schema_key_is_read_by_something_in_kdlab():
    unread = unread_keys(kdlab_reads(), all_keys())
    assert not unread, f"config keys nothing in kdlab/ reads (implement or remove them): {', '.join(unread)}"


def test_a_new_key_nothing_reads_is_caught():
    fake = [
        "trainer.never_read_anywhere",  # a leaf no code mentions
        "optim.seed",  # `seed` is read, but of trainer and data.label_noise, never of optim
        "logging.name",  # `name` is read of many sections, never of logging
    ]
    assert unread_keys(kdlab_reads(), [*all_keys(), *fake]) == fake


def test_a_key_whose_only_reader_goes_is_caught():
    sources = kdlab_sources()
    schedule = "kdlab/engine/schedule.py"
    assert sources[schedule].count("cfg.min_lr") == 2
    sources[schedule] = sources[schedule].replace("cfg.min_lr", "0.0")
    assert unread_keys(collect_reads(sources), all_keys()) == ["schedule.min_lr"]


def test_reads_are_tied_to_their_section():
    keys = ["optim.seed", "optim.lr", "schedule.lr", "schedule.gamma", "data.name", "model.name", "eval.knn_k",
            "trainer.seed"]
    source = '''
from kdlab.config.schema import OptimConfig

def uses(cfg, optim: OptimConfig):
    gamma = schedule_gamma(cfg.schedule)
    data = cfg.data
    picked = data.name
    return optim.seed, gamma, picked, to_dict(cfg)["eval"]["knn_k"], getattr(cfg.trainer, "seed")

def schedule_gamma(s):
    return s.gamma

class Holder:
    def __init__(self, model_cfg):
        self.cfg = model_cfg

def build(cfg):
    return Holder(cfg.model), some_module.name, cfg.optimizer.lr
'''
    # `cfg.optimizer` is no section; `some_module.name` is no config (`Holder` keeps the model section but
    # never reads its `name`)
    assert unread_keys(collect_reads({"fake.py": source}), keys) == ["optim.lr", "schedule.lr", "model.name"]
