"""Stateful fake provider APIs on 127.0.0.1 (real sockets) for the tests and benchmarks."""
