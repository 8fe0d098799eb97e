"""The benchmarks behind docs/BENCHMARKS.md, run from the checkout root as ``python -m benchmarks.NAME``
(benchmarks/README.md says how a benchmark and its report section are written)."""
