"""Benchmarks: Patrol side by side with supervisor and circus (issue 8).

Run ``python bench/run.py --quick`` (see docs/benchmarks.md). Everything here uses only
the standard library, except :mod:`bench.query`, which runs inside the throwaway
virtual environment that holds the peers (it needs pyzmq to talk to circus).
"""
