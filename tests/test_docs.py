"""README.md and docs/*.md: every link resolves and every command runs or parses.

Commands come from ```bash blocks and from inline code that starts with a command
(`jaxae run ...`, `python ...`, `pytest ...`, `bash ...`, `pip ...`). Each is checked
as far as it can be without data the tests do not have:

- ``jaxae SUB ...`` and ``python -m jaxae.bench ...``: parsed by the CLI's own parser,
  which checks every flag name, type and choice; ``jaxae run`` also builds its
  configuration (the preset, then every flag; a flag the run's method would ignore
  is refused), as the command does before it loads anything. The set-up command's
  ``jaxae run`` runs for real at a tiny size, and the first documented ``jaxae
  encode``, ``predict`` and ``info`` run on its folder.
- ``python path/to/script.py ...``: the script exists and its own parser accepts the
  arguments (the script is stopped right after parsing).
- ``pytest ...``: the paths it names exist; ``bash x.sh``: ``bash -n`` parses it;
  ``pip install``: every extra of this project it names exists.

```python blocks compile, and every ``jaxae.NAME`` and ``from jaxae.x import NAME``
resolves. ```text blocks that show a ``jaxae SUB`` synopsis name only SUB's flags.
Relative links point at files that exist (a ``#anchor`` into a page at one of its
headings), and so do repository paths and result files named in inline code.
http(s) links are listed, not fetched: the tests run offline.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "bench/results/README.md",
]
SETUP = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && jaxae run",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' "
    "&& python -m pytest -n auto",
)
COMMANDS = ("jaxae", "python", "python3", "pytest", "bash", "pip")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
SPAN = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
# Names in inline code that are files a run or a command writes, not files of the repository.
WRITTEN = {
    "report.json", "report.md", "bench.json", "bench.md", "bench.png", "clusters.png",
    "confusion.png", "codes.png", "loss.png", "reconstructions.png", "augmented.png",
    "variants.txt", "mnist_784.npz", "mine.npz", "KIND.npz", "checkpoint.msgpack",
}  # fmt: skip


# --- reading the pages -----------------------------------------------------------------------


@functools.cache
def page(path: Path) -> tuple[list[tuple[str, str]], str]:
    """(fenced blocks as (language, body), the text outside them) of a page."""
    text = path.read_text()
    return [(m[1], m[2]) for m in FENCE.finditer(text)], FENCE.sub("", text)


def spans(path: Path) -> list[str]:
    """Inline code of a page, whitespace collapsed."""
    return [" ".join(s.split()) for s in SPAN.findall(page(path)[1])]


def shell_lines(body: str) -> list[str]:
    return [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def commands(line: str) -> list[list[str]]:
    """The commands of a shell line (split at ``&&``), environment assignments dropped."""
    found, current = [], []
    for token in [*shlex.split(line, comments=True), "&&"]:
        if token == "&&":
            while current and ENV.match(current[0]):
                current.pop(0)
            if current:
                found.append(current)
            current = []
        else:
            current.append(token)
    return found


def is_command(span: str) -> bool:
    words = [w for w in span.split() if not ENV.match(w)]
    return bool(words) and words[0] in COMMANDS and len(words) > 1


def documented() -> list[tuple[str, list[str]]]:
    """Every command of every page: ("page: text", argv)."""
    found = []
    for path in PAGES:
        blocks, _ = page(path)
        lines = [line for lang, body in blocks if lang == "bash" for line in shell_lines(body)]
        lines += [s for s in spans(path) if is_command(s)]
        for line in lines:
            found += [(f"{path.name}: {line}", argv) for argv in commands(line)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> set[str]:
    found, counts = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", page(path)[1], re.M):
        base = slug(heading)
        found.add(f"{base}-{counts[base]}" if base in counts else base)
        counts[base] = counts.get(base, 0) + 1
    return found


def expand(pattern: str) -> list[str]:
    """Shell braces: ``a{,-b}.md`` -> ``a.md``, ``a-b.md``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    return [
        e
        for alt in m[1].split(",")
        for e in expand(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


# --- the checks ------------------------------------------------------------------------------


@functools.cache
def jaxae_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser ``jaxae`` builds (``jaxae.cli._main``), with its subparsers."""
    from jaxae.cli import _subcommands

    parser = argparse.ArgumentParser(prog="jaxae")
    sub = parser.add_subparsers(dest="command", required=True)
    subparsers = {}
    for name, (add_args, _, _) in _subcommands().items():
        subparsers[name] = sub.add_parser(name)
        add_args(subparsers[name])
    return parser, subparsers


def parse_jaxae(args: list[str]) -> argparse.Namespace | None:
    """``jaxae ARGS`` parsed; None for ``--help``. Raises AssertionError with argparse's
    message on a bad flag, and JaxaeError where ``jaxae run`` would refuse its flags.
    A subcommand alone (`jaxae predict` in a sentence) names the command: it must exist."""
    parser, subparsers = jaxae_parser()
    if len(args) == 1 and not args[0].startswith("-"):
        assert args[0] in subparsers, f"jaxae has no subcommand {args[0]}"
        return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(args)
    except SystemExit as e:
        if e.code == 0 and ("--help" in args or "-h" in args):
            return None
        raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None
    if ns.command == "run" and ns.resume is None:
        from jaxae.cli.flags import check_distributed_flags
        from jaxae.cli.run import experiment_config

        check_distributed_flags(ns)
        experiment_config(ns)
    if ns.command == "bench":
        from jaxae.bench import peers, suite

        for given, known in ((ns.sections, suite.SECTIONS), (ns.peers, peers.PEERS)):
            assert set(given.split(",")) <= set(known) | {"none"}, given
    return ns


class Parsed(Exception):
    """A script's arguments parsed: stop before it does any work."""


def check_script(path: Path, args: list[str], monkeypatch) -> None:
    assert path.is_file(), f"{path} does not exist"
    if path.suffix == ".sh":
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(parse_args(self, args, namespace))

    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(path.parent))  # a study imports its siblings
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", [str(path), *args])
        spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                module.main()
        except Parsed:
            return
        except SystemExit:
            raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None
        raise AssertionError(f"{path.name} did not parse its arguments")


def check_pytest(args: list[str]) -> None:
    takes_value = {"-k", "-n", "-m", "-p", "-c", "-o"}
    it = iter(args)
    for token in it:
        if token in takes_value:
            next(it, None)
        elif not token.startswith("-"):
            assert (ROOT / token.split("::")[0]).exists(), f"pytest: no {token}"


def check_pip(args: list[str]) -> None:
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
    extras = set(re.findall(r"^([\w-]+) = ", section.split("\n[")[0], re.M))
    assert {"test", "umap"} <= extras, extras
    for token in args:
        m = re.fullmatch(r"(?:\.|jaxae)\[([\w,-]+)\]", token)
        if m:
            assert set(m[1].split(",")) <= extras, f"pip: no extra {m[1]} in pyproject.toml"


def check(argv: list[str], monkeypatch) -> None:
    head, args = argv[0], argv[1:]
    if head == "jaxae":
        parse_jaxae(args)
    elif head in ("python", "python3") and args[:2] == ["-m", "jaxae.bench"]:
        parse_jaxae(["bench", *args[2:]])
    elif head in ("python", "python3") and args[:2] == ["-m", "jaxae.cli"]:
        parse_jaxae(args[2:])
    elif (head in ("python", "python3") and args[:2] == ["-m", "pytest"]) or head == "pytest":
        check_pytest(args[2:] if head != "pytest" else args)
    elif (head in ("python", "python3") and args[:2] == ["-m", "venv"]) or head == ".":
        pass  # the set-up's venv
    elif head in ("python", "python3") and args and args[0].endswith(".py"):
        check_script(ROOT / args[0], args[1:], monkeypatch)
    elif head == "bash":
        check_script(ROOT / args[0], args[1:], monkeypatch)
    elif head == "pip":
        assert args[:1] == ["install"], argv
        check_pip(args[1:])
    else:
        raise AssertionError(f"no rule to check {shlex.join(argv)}")


# --- the tests -------------------------------------------------------------------------------


def test_the_set_up_commands_are_the_promised_ones():
    blocks, _ = page(ROOT / "README.md")
    lines = [line for lang, body in blocks if lang == "bash" for line in shell_lines(body)]
    for command in SETUP:
        assert command in lines, f"README.md lost its set-up command: {command}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_pages_document_commands():
    """The collection itself works: each kind of command is found."""
    heads = {argv[0] for _, argv in documented()}
    assert {"jaxae", "python", "pip", "bash"} <= heads, heads
    subcommands = {argv[1] for _, argv in documented() if argv[0] == "jaxae"}
    assert {"run", "encode", "predict", "refine", "info", "bench"} <= subcommands


@pytest.mark.parametrize(
    "where, argv",
    documented(),
    ids=[f"{w.split(':')[0]}-{i}" for i, (w, _) in enumerate(documented())],
)
def test_every_command_parses(where, argv, monkeypatch):
    try:
        check(argv, monkeypatch)
    except Exception as e:
        raise AssertionError(f"{where}\n  {type(e).__name__}: {e}") from None


def run_flags_in_tables() -> list[tuple[str, str]]:
    """Table rows whose first cell is ``--flags`` of ``jaxae run`` (the results pages:
    "each row is jaxae run ... and the flags in its first cell")."""
    found = []
    for path in [p for p in PAGES if p.name.startswith("results-")]:
        for row in re.findall(r"^\| ([^|]+) \|", page(path)[1], re.M):
            cells = SPAN.findall(row)
            if cells and all(c.startswith("--") for c in cells):
                found += [(f"{path.name}: {c}", c) for c in cells]
    return found


def test_flags_in_results_tables_parse():
    rows = run_flags_in_tables()
    assert len(rows) >= 8
    for where, flags in rows:
        try:
            parse_jaxae(["run", "--dataset", "digits", "--n", "all", *shlex.split(flags)])
        except Exception as e:
            raise AssertionError(f"{where}\n  {type(e).__name__}: {e}") from None


def test_flags_named_in_prose_exist():
    """Inline ``--flag`` spans name a flag of a jaxae subcommand or of a study or script."""
    _, subparsers = jaxae_parser()
    known = {f for p in subparsers.values() for f in p._option_string_actions}
    for source in [*ROOT.glob("bench/**/*.py"), *ROOT.glob("scripts/*")]:
        known |= set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", source.read_text()))
    checked = 0
    for path in PAGES:
        for span in spans(path):
            if span.startswith("--"):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span):
                    assert flag in known, f"{path.name}: no command has {flag} ({span})"
                    checked += 1
    assert checked >= 30


def test_a_bad_command_is_caught(monkeypatch):
    """The checks can fail: an unknown flag, a bad choice, a flag the method ignores, a
    missing script, a script flag it does not have, a missing extra."""
    from jaxae.errors import JaxaeError

    bad = [
        ["jaxae", "run", "--no-such-flag"],
        ["jaxae", "run", "--preset", "n2d-faster"],
        ["jaxae", "run", "--preset", "n2d-fast", "--gamma", "0.1"],
        ["python", "bench/studies/no_such_study.py"],
        ["python", "bench/studies/refine_trace.py", "--no-such-flag"],
        ["pip", "install", "-e", ".[no-such-extra]"],
    ]
    for argv in bad:
        with pytest.raises((AssertionError, JaxaeError)):
            check(argv, monkeypatch)


def test_the_documented_commands_run(tmp_path, capsys):
    """`jaxae run` of the set-up at a tiny size, then the first documented `encode`,
    `predict` and `info` on its folder (the inputs the docs name are not here: digits)."""
    from jaxae.cli import main

    run = tmp_path / "run"
    assert main(["run", "--n", "200", "--epochs", "2", "--no-progress", "--out", str(run)]) == 0
    assert (run / "report.json").is_file()
    done = set()
    for where, argv in documented():
        if argv[:2] == ["jaxae", "info"] and "info" not in done:
            done.add("info")
            assert main(argv[1:]) == 0, f"{where}: {capsys.readouterr().err}"
        if argv[0] != "jaxae" or argv[1] not in ("encode", "predict") or argv[1] in done:
            continue
        ns = parse_jaxae(argv[1:])
        if ns is None:  # the command named in a sentence
            continue
        done.add(ns.command)
        out = tmp_path / f"{ns.command}.npy"
        swap = {str(ns.run_dir): str(run), str(ns.out): str(out)}
        if not Path(ns.input).exists():
            swap[ns.input] = "digits"
        assert main([swap.get(a, a) for a in argv[1:]]) == 0, f"{where}: {capsys.readouterr().err}"
        assert np.load(out).shape[0] == (ns.n or 1797), where
    assert done == {"encode", "predict", "info"}


def test_python_blocks_name_what_jaxae_has():
    import jaxae

    checked = 0
    for path in PAGES:
        for lang, body in page(path)[0]:
            if lang != "python":
                continue
            tree = ast.parse(body, filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxae"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), (
                            f"{path.name}: {node.module}.{alias.name}"
                        )
                        checked += 1
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "jaxae"
                ):
                    assert hasattr(jaxae, node.attr), f"{path.name}: jaxae.{node.attr}"
                    checked += 1
    assert checked >= 10


def test_synopses_name_real_flags():
    _, subparsers = jaxae_parser()
    checked = 0
    for path in PAGES:
        for lang, body in page(path)[0]:
            if lang != "text":
                continue
            for group in re.split(r"\n(?=jaxae )", body):
                m = re.match(r"jaxae (\w+)", group)
                if m is None:
                    continue
                known = subparsers[m[1]]._option_string_actions
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", group):
                    assert flag in known, f"{path.name}: jaxae {m[1]} has no {flag}"
                    checked += 1
    assert checked >= 40


def test_every_link_resolves():
    external = []
    for path in PAGES:
        for target in LINK.findall(page(path)[1]):
            if re.match(r"[a-z]+:", target):
                external.append(target)  # listed, not fetched
                continue
            file, _, anchor = target.partition("#")
            where = (path.parent / file).resolve() if file else path
            assert where.exists(), f"{path.name}: {target} does not exist"
            if anchor and where.suffix == ".md":
                assert anchor in anchors(where), f"{path.name}: no heading #{anchor} in {file}"
    assert all(re.match(r"https?://\S+$", url) for url in external), external


def test_files_named_in_inline_code_exist():
    """Repository paths (``bench/studies/x.py``) and result files (``t10k-dec-da.json``,
    under bench/results/) named in inline code."""
    results = ROOT / "bench" / "results"
    checked = 0
    for path in PAGES:
        for span in spans(path):
            if re.fullmatch(r"(?:bench|scripts|jaxae|tests|docs)/[\w./{},*-]*", span):
                for name in expand(span):
                    assert list(ROOT.glob(name)), f"{path.name}: {name} does not exist"
                    checked += 1
            elif re.fullmatch(r"[\w.{},-]+\.(?:json|md|png|txt)", span) and span not in WRITTEN:
                for name in expand(span):
                    assert list(results.rglob(name)), f"{path.name}: no {name} in bench/results"
                    checked += 1
    assert checked >= 30
