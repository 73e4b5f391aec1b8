"""The reproduction matrix: experiments x presets x seeds, each trained in its own subprocess."""

from repro.reproduce.presets import EXPERIMENTS, PRESETS, Preset, get_experiment, get_preset

__all__ = ["EXPERIMENTS", "PRESETS", "Preset", "get_experiment", "get_preset"]
