"""The benchmark harness: the Lync user model as load, reports, hot-path benchmarks."""
