"""The benchmark suite: jaxae's training and encoding speed beside its peers, in one run.

``jaxae bench [--quick] [--out DIR] [--data PATH]`` (or ``python -m jaxae.bench``) times

- training on the original recipe (3,000 digits, batch 100), a batch-size sweep on
  70,000 rows, and the pretraining of DEC's and N2D's d-500-500-2000-10 autoencoder
  (10,000 digits, batch 256): jaxae (``jaxae.train.fit``) and every installed peer
  (``jaxae.bench.peers``) through the same harness, in alternation, round after round,
  each implementation's time per step beside its ratio to jaxae's in the same round
  (median, min and max over the rounds);
- encoding latency (median, p99) for N rows, with the host copies and without,
  float32 and uint8 input;
- compilation: a cold process and a second one that reads the persistent cache;

and writes ``bench.json``, ``bench.md`` and ``bench.png`` (rewritten as results
arrive, so a run that is cut short still leaves what it measured). The digits come
from ``--data``, else MNIST if jaxae has it cached, else scikit-learn's digits.
Machines are shared and noisy: compare ratios from one run, not absolute times
across runs. The repository's bench/ runs the same groups under pytest-benchmark;
its bench/results/ holds reports per machine and the targets they are held to.

Modules: ``harness`` (timing), ``peers`` (the implementations), ``suite`` (sizes and
cases), ``report`` (json, markdown, figure), ``encode``, ``compile_cache``, ``data``,
``command`` (the flags).

Example::

    python -m jaxae.bench --quick --out /tmp/bench     # about a minute on 2 CPU cores
"""

from jaxae.bench.command import add_args, main

__all__ = ["add_args", "main"]
