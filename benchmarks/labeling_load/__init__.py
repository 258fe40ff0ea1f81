"""The parts of benchmarks/bench_labeling_load.py: the simulated annotators (``client``),
the seeded database (``seeding``), and what is measured besides latency (``measures``)."""
