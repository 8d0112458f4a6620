"""The one-command comparison evaluators run: quality of every backend and baseline on the same
held-out data, serving speed on one CPU thread, and search scaling to 1M photos.

    python -m sbir_core.bench [--quick] [--out-dir .]      # writes BENCHMARKS.md and bench.json

Modules: `data` (the evaluation sets and the demo gallery), `quality`, `speed`, `scaling`,
`env` (thread settings and the machine description), `report` (Markdown). Nothing here imports
torch at module level; only the torch-eager comparison in `speed` does, inside its function.
"""
