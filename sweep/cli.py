"""``qkd-sweep`` (also ``python -m sweep``): the command line.

Bad input (an unknown teacher, too few qubits for the classes, missing data
files offline, ...) prints one line naming the field or file and exits with
status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import typing
from pathlib import Path

from workers.choices import FIELD_CHOICES
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.help import FIELD_HELP, TEACHER_HELP
from workers.io import DataError, StorageError
from workers.kinds import DATASETS, STUDENT_KINDS, TEACHERS
from workers.refs import load
from workers.teacher_settings import TeacherSettings

EXIT_BAD_INPUT = 2
#: 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe.
EXIT_BROKEN_PIPE = 141


#: Fields whose option is spelled by hand (cache_dir defaults to DIR/cache, beside --out).
_NOT_OPTIONS = {"teacher_settings", "cache_dir"}
#: Extra spellings kept so that older command lines still work.
_ALIASES = {"temperature": ("-T",), "learn_scale": ("--fixed-scale",)}
#: Integers go into 64-bit columns of the result tables (and torch seeds take no more).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: Characters that end a line for str.splitlines(): an error stays one line.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def _error(message: str) -> None:
    """The one line bad input prints (a line break in a key or a file name is escaped)."""
    print(f"qkd-sweep: error: {str(message).translate(_LINE_BREAKS)}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the option (not the whole usage)."""

    def error(self, message: str) -> typing.NoReturn:
        _error(f"{message} (see {self.prog} --help)")
        self.exit(EXIT_BAD_INPUT)


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not _INT_MIN <= value <= _INT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: integers here are 64-bit")
    return value


def _number(text: str) -> float:
    """A finite float: argparse's float() takes 'nan' and 'inf', which no setting means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


_TYPES = {int: _integer, float: _number}


def _option(p: argparse.ArgumentParser, dest: str, tp, default, help_text: str) -> None:
    """One option made from a config field: its type, default and help; choices in the help
    (TrialConfig.validate rejects a bad value in one line naming the field)."""
    base = next(a for a in (typing.get_args(tp) or (tp,)) if a is not type(None))
    flag = "--" + dest.replace("_", "-")
    choices = FIELD_CHOICES.get(dest)
    if choices:
        help_text += f" (one of: {', '.join(choices)}"
        help_text += f"{_REFERENCES[dest]})" if dest in _REFERENCES else ")"
    if base is bool:
        if default:  # on by default: the option turns it off
            flags = ("--no-" + flag.removeprefix("--"), *_ALIASES.get(dest, ()))
            p.add_argument(*flags, dest=dest, action="store_false", help=f"off: {help_text}")
        else:
            p.add_argument(flag, *_ALIASES.get(dest, ()), dest=dest, action="store_true", help=help_text)
        return
    kind = _TYPES.get(base, base)
    p.add_argument(flag, *_ALIASES.get(dest, ()), dest=dest, type=kind, default=default, help=help_text)


#: Fields where a reference to the user's code may stand instead of a registered kind's name.
_REFERENCES = {
    "dataset": "; or PKG.MODULE:CALLABLE, returning (train_images, train_labels, test_images, test_labels)",
    "teacher": "; or PKG.MODULE:CALLABLE, returning a torch.nn.Module for (n_classes, image_shape); "
    "or torchvision:NAME, e.g. torchvision:resnet18",
}


def _kinds_epilog() -> str:
    """The registered kinds (built in, and those installed packages declare as entry points),
    read from the registries when the help is made."""
    lines = ["kinds (built in, or from installed packages' entry points qkd_sweep.datasets/teachers/students):"]
    for what, registry in (("datasets", DATASETS), ("teachers", TEACHERS), ("students", STUDENT_KINDS)):
        lines.append(f"  {what}: {', '.join(registry)}")
    lines.append("  a dataset, teacher or circuit may also be a reference PKG.MODULE:CALLABLE to your own code "
                 "(README: Your own circuit / teacher / dataset)")  # fmt: skip
    return "\n".join(lines)


def _trial_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trial",
        help="run one distillation trial (or a baseline) and append its result row",
        description="Train one student, optionally distilled from a teacher, and append the result to "
        "DIR/trials.parquet and DIR/epochs.parquet. Every option is a field of workers.config.TrialConfig "
        "(teacher-* of TeacherSettings); a spec's grid and trial sections take the same names.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(TrialConfig)
    for f in dataclasses.fields(TrialConfig):
        if f.name == "student":  # every registered kind, a package's too
            text = "; ".join(f"{k.name}: {k.description}" for k in STUDENT_KINDS.values())
            _option(p, f.name, hints[f.name], f.default, text)
        elif f.name not in _NOT_OPTIONS:
            _option(p, f.name, hints[f.name], f.default, FIELD_HELP[f.name])
    teacher_hints = typing.get_type_hints(TeacherSettings)
    for f in dataclasses.fields(TeacherSettings):
        _option(p, f"teacher_{f.name}", teacher_hints[f.name], f.default, TEACHER_HELP[f.name])
    p.add_argument("--cache-dir", default=None, help="teacher cache (default: DIR/cache)")
    p.add_argument("--out", default="results/trial", metavar="DIR", help="results folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines")


def config(args: argparse.Namespace) -> TrialConfig:
    """The validated trial configuration the ``trial`` command's options give."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrialConfig) if f.name not in _NOT_OPTIONS}
    teacher = TeacherSettings(
        **{f.name: getattr(args, f"teacher_{f.name}") for f in dataclasses.fields(TeacherSettings)}
    )
    return TrialConfig(
        **values, cache_dir=args.cache_dir or str(Path(args.out) / "cache"), teacher_settings=teacher
    ).validate()


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="a sweep spec (YAML), e.g. specs/quickstart.yaml")
    p.add_argument("--data-root", default=None, help="overrides the spec's paths.data_root")
    p.add_argument("--results", default=None, metavar="ROOT", help="overrides the spec's paths.results")
    p.add_argument("--only", action="append", default=[], metavar="FIELD=VALUE",
                   help="run only trials with this value (repeatable; a field given twice matches either)")  # fmt: skip


def _sweep_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a spec and print its grid, without running anything",
                       description="Check a spec and print the expanded grid and the trials per phase.")  # fmt: skip
    _spec_args(p)
    p = sub.add_parser("sweep", help="run a spec: teachers (phase 1), then student trials under Ray Tune",
                       description="Run every trial of a spec not finished yet, then print the tables.")  # fmt: skip
    _spec_args(p)
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)")  # fmt: skip
    p.add_argument("--num-cpus", type=_integer, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--fresh", action="store_true", help="discard this spec's results and run everything again")
    p.add_argument("--no-tables", action="store_true", help="do not write and print the tables at the end")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no Ray Tune tables, even with --verbose (a line per finished trial either way)")  # fmt: skip


def tables_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tables",
        help="roll a results folder up into the paper's tables and figures",
        description="Write tables.md, tables.tex, tables.csv and figures/*.png from RESULTS_DIR/trials.parquet "
        "(ok trials only; mean ± std over seeds and paired comparisons with the baseline) and print the Markdown. "
        "RESULTS_DIR may be a URI (s3://, gs://, file://) as a spec's results root may.",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of RESULTS_DIR")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qkd-sweep",
        description="Classical-to-quantum knowledge distillation experiments.",
        epilog=_kinds_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log teacher training; a sweep also prints Ray Tune's status tables")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    _trial_parser(sub)
    _sweep_parsers(sub)
    tables_parser(sub)
    return parser


#: Each command's ``run(args)``, as ``module:function``, imported when the command runs.
COMMANDS = {
    "trial": "sweep.commands.trial:run",
    "validate": "sweep.commands.validate:run",
    "sweep": "sweep.commands.run:run",
    "tables": "sweep.tables:run",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.verbose:
        logging.getLogger("workers").setLevel(logging.INFO)
    try:
        return load(COMMANDS[args.command])(args)
    except (ConfigError, DataError, FileNotFoundError, StorageError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`qkd-sweep validate ... | head`): stop quietly, as
        # the Python docs advise, instead of a traceback on stdout's final flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
