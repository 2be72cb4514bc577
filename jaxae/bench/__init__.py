"""The benchmark suite: jaxae's training, encoding and clustering beside its peers, in one run.

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
- N2D's clustering stage, UMAP + Gaussian mixture: the JAX backends beside umap-learn +
  scikit-learn (and ClustPy's N2D, a peer) on the same PCA codes, each one's seconds,
  its ratio to JAX's round by round, and the ACC/NMI it reached (``clustering``);

and writes ``bench.json``, ``bench.md`` and ``bench.png`` (rewritten as results
arrive, so a run that is cut short still leaves what it measured). The digits come
from ``--data``, else MNIST if jaxae has it cached, else scikit-learn's digits.
Machines are shared and noisy: compare ratios from one run, not absolute times
across runs. The repository's bench/ runs the same groups under pytest-benchmark;
its bench/results/ holds reports per machine and the targets they are held to.

Modules: ``harness`` (timing), ``peers`` (the implementations), ``suite`` (sizes and
cases), ``report`` (json, markdown, figure), ``encode``, ``compile_cache``,
``clustering``, ``data``, ``command`` (the flags). docs/benchmarks.md says how to read
the clustering section and the ClustPy peer.

Example::

    python -m jaxae.bench --quick --out /tmp/bench     # a minute or two on 2 CPU cores
    python -m jaxae.bench --quick --sections clustering --out /tmp/bench
"""

from jaxae.bench.command import add_args, main

__all__ = ["add_args", "main"]
