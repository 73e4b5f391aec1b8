"""The stages of ``scripts/gpu-check.sh`` (issue #26): one prepared, time-boxed GPU check.

``python -m scripts.gpu_check start|run STAGE|finish STAGE|check-limits OUT`` (PYTHONPATH = the
repository root). Each stage writes one JSON file into OUT_DIR as soon as it has figures, and
``finish`` records its status (ok, failed with its error, timed out) and rewrites summary.md. The
stages reuse the project's code: ``repro env``, the trainer's components and evaluation, ``repro
estimate``, ``repro reproduce``'s runner and the pytest-benchmark benchmarks. Nothing here imports
torch at module level, so ``finish`` and the summary start in a fraction of a second.
"""
