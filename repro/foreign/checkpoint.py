"""Read a foreign checkpoint for `repro verify`: its state_dict, what it says about its training,
and the files of other frameworks, named as such.

The file is read without running its code (:func:`repro.train.checkpoint.read_torch_file`); its
state_dict is found bare, or under ``state_dict`` / ``model`` / ``net`` / ``model_state_dict``
(``module.`` and ``_orig_mod.`` prefixes dropped; a pickled module only with ``trust_pickle``).
A Keras/TensorFlow HDF5 file is recognised by its signature, a Caffe ``.caffemodel`` /
``.solverstate`` by its name, and each is refused with what to do; an ``.onnx`` file's weights are
read with the onnx package (:mod:`repro.foreign.onnx_weights`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn

from repro.errors import ReproError
from repro.foreign.normalizations import recorded_normalization
from repro.foreign.onnx_weights import input_preprocessing, load_onnx_graph, onnx_state_dict
from repro.train.checkpoint import FORMAT, read_torch_file, strip_wrapper_prefixes

WRAPPERS = ("state_dict", "model", "net", "model_state_dict")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_OFFSETS = (0, 512, 1024, 2048)  # the signature sits at 0 or after a user block of 2^k bytes
CIFAR10_TRAIN_IMAGES = 50_000
PAPER_BATCH = 128  # Sec. 4.2: a mini-batch size of 128
EPOCH_KEYS = ("epoch", "epochs", "last_epoch")
BEST_KEYS = ("best_prec1", "best_acc", "best_acc1", "acc", "accuracy")
ONNX_SUFFIX = ".onnx"
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt")


@dataclass
class Foreign:
    """A foreign file's state_dict (prefixes dropped), where in the file it was found, and the
    training state the file carries besides the weights (epoch, optimizer, best accuracy)."""

    state: dict[str, torch.Tensor]
    found: str
    recorded: Any = None  # the Normalization a resnet-repro checkpoint says it trained with
    extras: TrainingExtras = field(default_factory=lambda: TrainingExtras())
    named: tuple[str, str | None] | None = None  # (net, shortcut) a resnet-repro file records
    notes: list[str] = field(default_factory=list)  # how the file was read, when not by torch


def _tensor_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, torch.Tensor) for v in value.values())
    )


def _unwrap(obj: Any) -> tuple[Any, str, Mapping | None]:
    """(the state_dict candidate, how it was found, the wrapping dict or None)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), f"a pickled {type(obj).__name__} module", None
    if isinstance(obj, Mapping) and not _tensor_dict(obj):
        for name in WRAPPERS:
            inner = obj.get(name)
            if isinstance(inner, nn.Module):
                return inner.state_dict(), f"a pickled module under {name!r}", obj
            if _tensor_dict(inner):
                return inner, f"a dict under {name!r}", obj
    return obj, "a bare state_dict", None


def find_state_dict(obj: Any, path: Path, recorded: Any = None) -> Foreign:
    """The state_dict in what ``torch.load`` returned; ReproError saying what was there instead."""
    obj, found, wrapper = _unwrap(obj)
    if not _tensor_dict(obj):
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else []
        what = f"a dict with keys {keys}" if keys else f"a {type(obj).__name__}"
        raise ReproError(
            f"checkpoint {path} holds {what}: no state_dict of tensors at its top level or under "
            f"{', '.join(repr(w) for w in WRAPPERS)}"
        )
    tensors = {strip_wrapper_prefixes(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    stripped = sorted(
        {
            k[: len(k) - len(strip_wrapper_prefixes(k))]
            for k in obj
            if strip_wrapper_prefixes(k) != k
        }
    )
    if stripped:
        found += f", keys prefixed {' / '.join(stripped)}"
    return Foreign(tensors, found, recorded, training_extras(wrapper))


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class KeyValue(TypedDict):
    key: str  # the wrapper's key it was found under
    value: float


def _first_number(wrapper: Mapping, keys: tuple[str, ...]) -> KeyValue | None:
    """The first of ``keys`` the wrapper holds a finite number under."""
    for key in keys:
        value = _number(wrapper.get(key))
        if value is not None:
            return KeyValue(key=key, value=value)
    return None


class OptimizerNote(TypedDict):
    key: str
    lr: float | None  # the first parameter group's
    tensors_with_state: int


class TrainingExtras(TypedDict, total=False):
    """What a wrapping dict says about training (each part only when the file has it)."""

    epoch: KeyValue
    best_accuracy: KeyValue
    optimizer: OptimizerNote


def training_extras(wrapper: Mapping | None) -> TrainingExtras:
    """What a wrapping dict says about training: an epoch counter, a best accuracy, whether an
    optimizer state is there (and its learning rate)."""
    out = TrainingExtras()
    if wrapper is None:
        return out
    epoch, best = _first_number(wrapper, EPOCH_KEYS), _first_number(wrapper, BEST_KEYS)
    if epoch is not None:
        out["epoch"] = epoch
    if best is not None:
        out["best_accuracy"] = best
    for key in OPTIMIZER_KEYS:
        opt = wrapper.get(key)
        if isinstance(opt, Mapping) and "param_groups" in opt:
            groups = opt.get("param_groups")
            first = groups[0] if isinstance(groups, list) and groups else None
            lr = _number(first.get("lr")) if isinstance(first, Mapping) else None
            state = opt.get("state")
            out["optimizer"] = {
                "key": key,
                "lr": lr,
                "tensors_with_state": len(state) if isinstance(state, Mapping) else 0,
            }
            break
    return out


def bn_batches(state: Mapping[str, torch.Tensor]) -> int | None:
    """The largest BN ``num_batches_tracked`` (training batches seen), None if there is none."""
    counts = [
        int(v.item())
        for k, v in state.items()
        if k.endswith("num_batches_tracked") and v.numel() == 1 and not v.is_floating_point()
    ]
    return max(counts) if counts else None


def training_notes(foreign: Foreign) -> list[str]:
    """Lines on how far the file's training went, from its BN counters and wrapper keys."""
    notes = list(foreign.notes)
    batches = bn_batches(foreign.state)
    if batches == 0:
        notes.append("BN statistics from 0 batches: the running statistics were never updated")
    elif batches is not None:
        per_epoch = math.ceil(CIFAR10_TRAIN_IMAGES / PAPER_BATCH)
        notes.append(
            f"BN statistics from {batches:,} batches (~{batches / per_epoch:.1f} epochs at batch "
            f"{PAPER_BATCH}, {per_epoch} batches per epoch of CIFAR-10's 50,000 images; the "
            "paper trains 64k iterations, ~164 epochs)"
        )
    extras = foreign.extras
    if "epoch" in extras:
        notes.append(f"epoch counter {extras['epoch']['key']!r} = {extras['epoch']['value']:g}")
    if "best_accuracy" in extras:
        best = extras["best_accuracy"]
        notes.append(f"the file records {best['key']!r} = {best['value']:g}")
    if "optimizer" in extras:
        opt = extras["optimizer"]
        lr = "" if opt["lr"] is None else f", lr {opt['lr']:g}"
        notes.append(
            f"an optimizer state under {opt['key']!r} ({opt['tensors_with_state']} tensors "
            f"with state{lr})"
        )
    return notes


CAFFE_CONVERT = (
    "no maintained reader of Caffe weights was found besides OpenCV's dnn module (Caffe itself "
    "had its last release in 2017), so repro verify reads none: load the net with Caffe (or cv2.dnn.readNetFromCaffe with its .prototxt), "
    "save each layer's blobs as a PyTorch state_dict (Convolution -> weight [out, in, kh, kw]; "
    "BatchNorm blobs mean and variance divided by its third blob, the scale factor, -> "
    "running_mean/running_var; the Scale layer after it -> weight/bias; InnerProduct -> linear "
    "weight/bias) with torch.save, and verify that file"
)


def caffe_file(path: Path) -> str | None:
    """A refusal for Caffe's weights (``.caffemodel``) and solver states (``.solverstate``),
    named by their suffix (protobuf has no signature; Caffe's HDF5 variants end in ``.h5``)."""
    name = path.name.lower()
    if ".caffemodel" in name:
        return f"checkpoint {path} is a Caffe model, not a PyTorch file: {CAFFE_CONVERT}"
    if ".solverstate" in name:
        return (
            f"checkpoint {path} is a Caffe solver state (the solver's iteration and momentum "
            "history, no weights): verify the .caffemodel it was saved with; "
            f"{CAFFE_CONVERT}"
        )
    return None


def other_framework(path: Path) -> str | None:
    """What framework's file this is when it is not PyTorch's and says so in its name or bytes."""
    if caffe := caffe_file(path):
        return caffe
    try:
        with path.open("rb") as f:
            head = f.read(max(HDF5_OFFSETS) + len(HDF5_SIGNATURE))
    except OSError:
        return None  # read_torch_file names the problem
    if any(head[o : o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in HDF5_OFFSETS):
        return (
            f"checkpoint {path} is a Keras/TensorFlow HDF5 file (it starts with the HDF5 "
            "signature), not a PyTorch file: load it with Keras, save each layer's weights as a "
            "PyTorch state_dict (conv kernels transposed from [kh, kw, in, out] to "
            "[out, in, kh, kw]; BN gamma/beta/moving_mean/moving_variance as "
            "weight/bias/running_mean/running_var) with torch.save, and verify that file"
        )
    return None


def load_onnx(path: Path) -> Foreign:
    """An ONNX model's weights (:mod:`repro.foreign.onnx_weights`), noted as such."""
    graph = load_onnx_graph(path)
    state, unfolded = onnx_state_dict(graph, path)
    foreign = Foreign(state, "an ONNX graph's weights in graph order, read with the onnx package")
    if ops := input_preprocessing(graph):
        foreign.notes.append(
            f"the ONNX graph computes {', '.join(ops)} with constants before its first Conv (a "
            "built-in input normalisation?): verify does not run it and applies only the "
            "normalisation it is given; give the one those constants make"
        )
    if unfolded:
        foreign.notes.append(
            f"{unfolded} ONNX convolutions carry a BN the exporter folded into them (conv with "
            "bias, no BatchNormalization node): read as conv + BN with unit statistics and the "
            "bias as BN's shift (exact: the outputs and the BN outputs of Fig. 7 are unchanged)"
        )
    return foreign


def recorded_net(name: Any, kwargs: Any) -> tuple[str, str | None] | None:
    """(net name as the readings name it, shortcut or None if unrecorded) from a resnet-repro
    checkpoint's ``model_name``/``model_kwargs``: ``resnet_cifar`` + depth 8 -> ``resnet8``."""
    if not isinstance(name, str):
        return None
    kwargs = kwargs if isinstance(kwargs, Mapping) else {}
    depth = kwargs.get("depth")
    if name in ("resnet_cifar", "plain_cifar") and isinstance(depth, int):
        name = f"{name.removesuffix('_cifar')}{depth}"
    shortcut = kwargs.get("shortcut")
    return name, shortcut if isinstance(shortcut, str) else None


def load_foreign(path: str | os.PathLike, trust_pickle: bool = False) -> Foreign:
    """Read a foreign checkpoint without running its code (unless ``trust_pickle``)."""
    path = Path(path)
    if path.is_file() and (why := other_framework(path)):
        raise ReproError(why)
    if path.is_file() and path.suffix.lower() == ONNX_SUFFIX:
        return load_onnx(path)
    obj = read_torch_file(
        path,
        "cpu",
        trust_pickle,
        advice=lambda p: "use an intact copy",
        opt_in="`repro verify --trust-pickle`",
    )
    recorded = None
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT and _tensor_dict(obj.get("model")):
        recorded = recorded_normalization(dict(obj), path)
        foreign = find_state_dict(obj["model"], path, recorded)
        foreign.found = "a resnet-repro checkpoint's 'model'"
        foreign.named = recorded_net(obj.get("model_name"), obj.get("model_kwargs"))
        return foreign
    return find_state_dict(obj, path)
