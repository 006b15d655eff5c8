"""The model's worker thread (scheduling, cancellation) and the work it does (runtime)."""
