"""asv benchmark suites for scratchnet (see docs/benchmarks.rst)."""
