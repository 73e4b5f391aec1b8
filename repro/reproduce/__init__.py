"""The reproduction matrix: experiments x presets x seeds, each trained in its own subprocess.

What an experiment and a preset are lives in :mod:`repro.experiments`; a matrix's summary and
statistics in :mod:`repro.matrix_summary`.
"""
