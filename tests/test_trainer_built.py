"""The Trainer is built in ``__init__`` (issue 25 item 5): nothing that ``state_dict`` or the loop
reads is first set by ``fit``, the model it exposes is the one trained (after any BatchNorm
conversion that returns a new module, as SyncBatchNorm's does), and the fast path's request and
its resolution are two fields, neither changing type."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from repro.train import components, ddp
from repro.train.config import FastPath, TrainConfig
from repro.train.trainer import Trainer


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(
        "resnet_cifar",
        out,
        model_kwargs={"depth": 8},
        overrides={"batch_size": 16, "iterations": 4, "milestones": (2,)},
        device="cpu",
        data_root=data,
        eval_every=2,
        threads=1,
        quiet=True,
        **kw,
    )


def _trainer(config: TrainConfig) -> Trainer:
    return Trainer(config, torch.device("cpu"), ddp.DistInfo())


def test_fit_adds_no_attribute_and_the_state_is_whole_before_it(synthetic_cifar, tmp_path):
    trainer = _trainer(_config(synthetic_cifar, tmp_path / "run"))
    built = set(vars(trainer))
    state = trainer.state_dict()  # before fit: every part of the training state is there
    assert state["iteration"] == 0 and state["model"].keys() == trainer.model.state_dict().keys()
    trainer.fit()
    assert set(vars(trainer)) == built
    assert trainer.loop.iteration == 4 and trainer.last_saved == 4


def test_the_model_is_the_converted_one_when_conversion_returns_a_new_module(
    synthetic_cifar, tmp_path, monkeypatch
):
    """SyncBatchNorm.convert_sync_batchnorm returns a new module: the trainer's model and its
    checkpoints must be that one, never the module built before the conversion."""
    converted = []

    def convert(model, recipe, dist, device, sync_bn):
        new = copy.deepcopy(model)  # a new object, as convert_sync_batchnorm returns
        converted.append(new)
        return new

    monkeypatch.setattr(components, "batch_norm_of", convert)
    trainer = _trainer(_config(synthetic_cifar, tmp_path / "run"))
    assert trainer.model is converted[0] is trainer.parts.model
    weight = next(iter(converted[0].state_dict()))
    with torch.no_grad():
        converted[0].state_dict()[weight].add_(1.0)
    assert torch.equal(trainer.state_dict()["model"][weight], converted[0].state_dict()[weight])


def test_the_request_stays_a_word_and_the_resolution_is_a_fast_path(synthetic_cifar, tmp_path):
    trainer = _trainer(_config(synthetic_cifar, tmp_path / "run", channels_last="off"))
    assert trainer.config.channels_last == "off" and trainer.config.compile == "auto"
    assert trainer.fast == FastPath(channels_last=False, compile_mode=None)
    recorded = trainer.run_config
    assert (recorded.channels_last, recorded.compile, recorded.compile_mode) == (False, False, None)
    assert recorded.log_every == trainer.log_every == 50 and trainer.config.log_every is None
