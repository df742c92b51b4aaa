"""Benchmarks run by `pathwatch bench ...`; each prints figures and a baseline ratio."""
