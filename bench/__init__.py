"""Benchmarks for oriserver: a closed-loop gRPC load generator, reference servers and suites."""
