"""What `wwts bench` runs and compares: the seed article's loop (the baseline), the floor
(the least a pipeline can do), the deterministic photo set and its sample photos. Each
program runs as `python -m benchmarks.<name>`, so a wheel install benches like a checkout."""
