"""asv benchmark suites for scratchnet (see README, "Benchmarks")."""
