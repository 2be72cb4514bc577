"""The ``jaxae`` command: run, encode, predict, refine, info, bench.

Each subcommand is a module here with ``add_args(parser)`` and ``handle(args)``;
``main(argv)`` returns the exit status. The subcommands map flags onto
configuration and print what the library returns. Bad input (``JaxaeError``) is
one line on stderr, with the library's parameter names turned into the flags
that set them, and status 2; suspect input (``JaxaeWarning``) is one line on stderr
and the command goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings

from jaxae.errors import JaxaeError, JaxaeWarning

# Library parameters whose flag is not simply --name-with-dashes.
RENAMED = {"source": "--dataset", "out_path": "--out"}


def _subcommands():
    from jaxae.cli import encode, info, refine, run

    def bench_args(p):
        from jaxae import bench

        bench.add_args(p)

    def bench_handle(args):
        from jaxae import bench

        return bench.main(args)

    return {
        "run": (run.add_args, run.handle, "train, encode, cluster and score; write a run folder"),
        "encode": (encode.add_args, encode.handle, "encode images with a trained run"),
        "predict": (
            encode.add_predict_args,
            encode.handle_predict,
            "assign images to a trained run's clusters",
        ),
        "refine": (
            refine.add_args,
            refine.handle,
            "refine a finished DEC/IDEC run's pretrained models again with other settings; "
            "score them, writing nothing into the run",
        ),
        "info": (info.add_args, info.handle, "JAX version, backend and devices"),
        "bench": (
            bench_args,
            bench_handle,
            "time training, encoding and clustering beside the peers; write bench.json/.md/.png",
        ),
    }


def as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``batch_size=0`` in a library message becomes ``--batch-size 0`` (a flag of
    ``parser``), and so does the parameter a message is about (``batch_size must ...``,
    its first word); a method's option (``umap.dim``) or a field whose flag has another
    name (``kernel_init``) becomes its flag wherever it is named. A flag that takes
    several values is given them as it takes them: ``image_size=(28, 28)`` becomes
    ``--image-size 28 28``."""
    from jaxae.cli.run import OPTION_FLAGS

    flags = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    flags.update(RENAMED)
    options = {k: v for k, v in OPTION_FLAGS.items() if v in parser._option_string_actions}
    flags.update(options)
    several = {a.dest for a in parser._actions if isinstance(a.nargs, int) and a.nargs > 1}

    def swap(m: re.Match) -> str:
        name, value = m.group(1), m.group(2) or ""
        flag = flags.get(name)
        if flag is None:
            return m.group(0)
        if value == "True":
            return flag
        if name in several:  # image_size=(28, 28) -> --image-size 28 28, as the flag takes it
            value = " ".join(value.strip("()").replace(",", " ").split())
        return f"{flag} {value}"

    ident = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?"
    message = re.sub(rf"\b({ident})=(True\b|\([^()]*\))?", swap, message)
    message = re.sub(r"^[a-z][a-z0-9_]*(?= must )", lambda m: flags.get(m[0], m[0]), message)
    for name, flag in options.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}\b", flag, message)
    return " ".join(message.split())  # "name= or" gave "--name  or"


@contextlib.contextmanager
def warning_lines(command: str):
    """Within: the first ``JaxaeWarning`` is one line on stderr, ``jaxae COMMAND: warning:
    ...`` (an encode of many chunks warns once); other warnings as Python shows them."""
    show, shown = warnings.showwarning, []

    def one_line(message, category, *args, **kwargs):
        if not issubclass(category, JaxaeWarning):
            return show(message, category, *args, **kwargs)
        if not shown:
            print(f"jaxae {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        shown.append(message)

    with warnings.catch_warnings():
        warnings.simplefilter("always", JaxaeWarning)  # every call of main, and not an error
        warnings.showwarning = one_line
        yield


def main(argv: list[str] | None = None, *, exit_after: bool = False) -> int:
    """``jaxae ARGV``: the exit status. ``exit_after``: the process ends when this returns
    (``console``), so once ``run`` is stopped by a signal, later signals are ignored."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["run"]:
        return _main(argv, None)
    from jaxae.signals import stop_on_signals

    # Before anything imports JAX (building the parsers does): from here on Ctrl-C and
    # SIGTERM set a flag that the run polls, at start-up too.
    with stop_on_signals(exiting=exit_after) as stopped:
        return _main(argv, stopped)


def console() -> None:
    """The ``jaxae`` command (and ``python -m jaxae.cli``): ``main``, then exit with its status.

    A run stopped by a signal (status 130) leaves with ``os._exit`` once its output
    is flushed: everything it writes is already on disk (atomic files, the run
    folder closed), and the interpreter's teardown of a JAX process that a second
    Ctrl-C interrupted midway could crash with SIGSEGV instead of exiting 130
    (seen here in 1 of 7 double Ctrl-Cs during training).
    """
    status = main(exit_after=True)
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(status)


def _main(argv: list[str], stopped) -> int:
    parser = argparse.ArgumentParser(prog="jaxae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    subparsers = {}
    for name, (add_args, handler, help_) in _subcommands().items():
        p = subparsers[name] = sub.add_parser(
            name, help=help_, description=help_, formatter_class=argparse.RawTextHelpFormatter
        )
        add_args(p)
        p.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    # Python 3.11's argparse turns a value of "--" (e.g. --epochs=--) into [].
    empty = [name for name, value in vars(args).items() if isinstance(value, list) and not value]
    if empty:
        flag = "--" + empty[0].replace("_", "-")
        subparsers[args.command].error(f"argument {flag}: expected one argument")
    args.parser = subparsers[args.command]
    args.argv = argv  # as given, so that a run records the command that reproduces it
    args.stopped = stopped
    try:
        with warning_lines(args.command):
            return args.handler(args)
    except JaxaeError as e:
        message = as_flags(" ".join(str(e).split()), args.parser)
        print(f"jaxae {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    console()
