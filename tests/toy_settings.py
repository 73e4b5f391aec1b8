"""A toy recipe and its preset as ONE entry (issue 25 item 6): the whole diff a new recipe needs.

No policy is given and baselines/tolerances.json has none for it, so its verdicts follow
``repro.experiments.DEFAULT_POLICY`` (completeness only). Imported by the test and by the trainer
subprocesses the test starts (each registers it in its own interpreter)."""

from __future__ import annotations

from repro.experiments import Preset, Settings, register
from repro.recipes import Recipe


def register_toy() -> Settings:
    """Register preset ``toy`` with its own recipe ``toy`` (1 iteration, batch 8, all images)."""
    return register(
        Preset(name="toy", recipe="toy", description="TOY: one step of batch 8", max_steps=1),
        Recipe(name="toy", batch_size=8, iterations=1, split="train", val_fraction=0.0),
    )
