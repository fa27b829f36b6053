"""Benchmark helpers: a seed-style loop to compare against and a deterministic photo set."""
