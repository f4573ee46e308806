"""Benchmarks: the harness (:mod:`~stereo.bench.harness`), the measured cases (:mod:`~stereo.bench.cases`)
and one module per benchmark with a ``main(argv)`` behind ``scripts/bench_*.py``."""
