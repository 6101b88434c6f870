"""Benchmarks of the pipeline (see bench/README.md). A package so configs can name `bench.models.*`."""
