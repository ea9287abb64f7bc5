"""Benchmarks: `make bench` runs them and writes JSON to benchmarks/results/ and a table to docs/benchmarks.md."""
