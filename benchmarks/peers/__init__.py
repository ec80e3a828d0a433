"""The benchmark suite's implementations: one module per library, each
building the same models from the same weights (see `workloads`)."""
