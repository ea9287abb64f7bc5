"""Benchmarks: `make bench` writes JSON to benchmarks/results/ and a table to docs/benchmarks.md."""
