import contextlib

import pyarrow as pa
from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    verbose_name = "Analysis"

    def ready(self) -> None:
        use_jemalloc_for_arrow()


def use_jemalloc_for_arrow() -> None:
    """Arrow's allocations (the exports' blocks) from jemalloc rather than the wheel's
    default, mimalloc: with blocks made on several threads, mimalloc held 60% more
    memory (160 against 95 MB for the examples' JSON Lines) and the export, paying
    for the fresh pages, took a third longer (benchmarks/bench_analysis.py). A pyarrow
    built without jemalloc keeps its default."""
    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())
