"""The one-command comparison evaluators run: quality of every backend and baseline on the same
held-out data, serving speed on one CPU thread, and search scaling to 1M photos.

    python -m sbir_core.bench [--quick] [--out-dir .]      # writes BENCHMARKS.md and bench.json

Modules: `quality`, `speed`, `scaling`, `load` (app sessions at once), `browser` (driving Chromium:
`browser_visitor`; profiling: `browser_profile`), `stores` (with `stores_photos`, `stores_report`),
`gallery` (what a visitor gets from a saved gallery), `image_quality` (FD/KID of the cgan's photos),
`env` (thread settings and the machine description), `report` (Markdown). The evaluation sets and
the demo gallery are the library's (`sbir_core.heldout`): the benchmark imports everything, nothing
imports it. Nothing here imports torch at module level; only the torch-eager comparison in `speed`
does, inside its function.
"""
