"""Timing, once for every implementation: warm-up, compilation apart, repeats, alternation.

``measure`` prepares each implementation of a group (builds, compiles, warms up: untimed),
then times them in rounds: round r runs each implementation once, in turn, so that a
machine whose speed drifts (shared CPUs, GPU clocks) shifts all of them alike. Each
run ends with the device synchronised (``Runner.run`` blocks); the process's CPU time
is taken around it too. ``add_ratios`` then divides each implementation's time by
jaxae's *in the same round*, and reports the median, min and max of those ratios: the
spread says how far a ratio can be trusted. On a CPU shared with other work the wall
time of a run swings with the load, while the CPU time it took swings far less: the
CPU-time ratio is the steadier of the two there (on a GPU it means little).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxae.bench import peers
from jaxae.bench.peers.common import Timing, Workload, first_line


@dataclasses.dataclass(frozen=True)
class Entry:
    """One implementation in a group: trained on ``workload``, timed ``repeats`` times."""

    name: str
    workload: Workload
    repeats: int = 1


def measure(
    entries: Sequence[Entry],
    *,
    required: Iterable[str] = (),
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[list[Timing], dict[str, str]]:
    """Time ``entries`` in alternation.

    Args:
      entries: the implementations of one group, in the order each round runs them.
      required: names whose failure is raised; any other failure is returned.
      log: called with a line per prepared implementation and per round.

    Returns:
      (timings, failures): a ``Timing`` per implementation that ran, in ``entries``'
      order, ``seconds`` holding every round's wall time; and name -> the
      ``Type: message`` of each implementation that failed to prepare or run.
    """
    required = set(required)
    runners: dict[str, Any] = {}
    seconds: dict[str, list[float]] = {}
    cpu_seconds: dict[str, list[float]] = {}
    failures: dict[str, str] = {}

    def attempt(entry: Entry, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # a peer that fails is a note, never a failure
            if entry.name in required:
                raise
            failures[entry.name] = first_line(e)
            runners.pop(entry.name, None)
            log(f"{entry.name}: failed, {failures[entry.name]}")
            return None

    for entry in entries:
        start = time.perf_counter()
        runner = attempt(entry, lambda e=entry: peers.prepare(e.name, e.workload))
        if runner is not None:
            runners[entry.name], seconds[entry.name], cpu_seconds[entry.name] = runner, [], []
            log(f"{entry.name}: prepared in {time.perf_counter() - start:.1f} s")
    for r in range(max((e.repeats for e in entries), default=0)):
        for entry in entries:
            if entry.name in runners and r < entry.repeats:
                cpu = time.process_time()
                t = attempt(entry, runners[entry.name].run)
                if t is not None:
                    seconds[entry.name].append(t)
                    cpu_seconds[entry.name].append(time.process_time() - cpu)
        done = ", ".join(
            f"{name} {1e3 * s[-1] / _steps(entries, name):.4g}"
            for name, s in seconds.items()
            if name in runners and len(s) > r
        )
        log(f"round {r + 1}: ms/step {done}")
    timings = []
    for entry in entries:
        if entry.name not in runners:
            continue
        runner, times = runners[entry.name], seconds[entry.name]
        steps = entry.workload.steps
        loss = attempt(entry, runner.final_loss)
        timings.append(
            Timing(
                entry.name,
                float(np.median(times)) / steps,
                float(runner.compile_seconds or 0.0),
                steps,
                float("nan") if loss is None else float(loss),
                str(runner.device),
                tuple(times),
                tuple(cpu_seconds[entry.name]),
            )
        )
    return timings, failures


def _steps(entries: Sequence[Entry], name: str) -> int:
    return next(e.workload.steps for e in entries if e.name == name)


def add_ratios(rows: list[dict], *, base: str = peers.JAXAE) -> list[dict]:
    """Sets each row's ``ratio_vs_jaxae``, ``ratio_min``, ``ratio_max`` (and
    ``cpu_ratio_vs_jaxae``) in place.

    Rows are grouped by (section, dtype, batch, n). Where a row and its group's
    ``base`` row both have ``seconds`` (one wall time per round), the ratio of each
    round is (row's seconds per step) / (base's in the same round), and the row gets
    the median, min and max over the rounds both ran; otherwise the ratio of
    ``seconds_per_step``. ``cpu_ratio_vs_jaxae``: the median of the same from
    ``cpu_seconds``, where both have them. Above 1, jaxae is faster. None where the
    group has no base.
    """
    key = lambda r: (r["section"], r["dtype"], r["batch"], r["n"])
    bases = {key(r): r for r in rows if r["implementation"] == base}
    for r in rows:
        ref = bases.get(key(r))
        if ref is None:
            r.update(ratio_vs_jaxae=None, ratio_min=None, ratio_max=None, cpu_ratio_vs_jaxae=None)
            continue
        ratios = _paired(r, ref, "seconds") or [r["seconds_per_step"] / ref["seconds_per_step"]]
        cpu = _paired(r, ref, "cpu_seconds")
        r.update(
            ratio_vs_jaxae=float(np.median(ratios)),
            ratio_min=float(min(ratios)),
            ratio_max=float(max(ratios)),
            cpu_ratio_vs_jaxae=float(np.median(cpu)) if cpu else None,
        )
    return rows


def _paired(row: dict, ref: dict, field: str) -> list[float]:
    """Per round: (row's ``field`` per step) / (ref's), over the rounds both ran."""
    pairs = zip(row.get(field) or (), ref.get(field) or ())
    return [(a / row["steps"]) / (b / ref["steps"]) for a, b in pairs if b > 0]


def latencies(call: Callable[[], Any], *, seconds: float, warmup: int = 2) -> np.ndarray:
    """Seconds per call: ``warmup`` untimed calls, then 5 to 1,000 timed within ``seconds``."""
    for _ in range(warmup):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 1000 and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.asarray(times)
