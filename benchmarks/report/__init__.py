"""The report behind docs/BENCHMARKS.md: ``python -m benchmarks.report``; one section module per benchmark
(see benchmarks/README.md)."""
