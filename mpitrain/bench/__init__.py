"""Benchmarks, each with its baseline in the same run: python -m mpitrain.bench {collectives}."""
