"""Evaluate a checkpoint on a CIFAR-10 split: top-1 error, loss and per-class accuracy.

Works on any checkpoint this project wrote (normalisation from its config) and, with
``--from akamaster --model resnetNN``, on the published weights of akamaster/pytorch_resnet_cifar10.
Both are read without running code; ``--trust-pickle`` allows full unpickling for trusted files.

``--from akamaster`` stays (issue 25 decided to keep it, not alias it): it maps one known layout by
key names (:mod:`repro.foreign.akamaster`) and reports the file's own ``best_prec1`` beside the
measured error. Any other code base's checkpoint, akamaster's included, goes through
`repro verify` (:mod:`repro.foreign.verify`), which maps by structure and tells layouts apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from repro.cli.options import add_data_root, add_device, add_json
from repro.data import get_split, load_cifar10, resolve_data_root
from repro.data.splits import DEFAULT_SPLIT_SEED, SPLITS
from repro.devices import resolve_device
from repro.errors import ReproError
from repro.evaluate import (
    EvalResult,
    checkpoint_normalization,
    evaluate,
    refuse_nan_logits,
)
from repro.foreign.akamaster import MODELS as AKAMASTER_MODELS
from repro.foreign.akamaster import load_akamaster
from repro.foreign.structure import weights_problem
from repro.train.checkpoint import TRUST_FLAG, model_from_checkpoint

SOURCES = ("repro", "akamaster")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file (or akamaster .th)")
    add_data_root(parser)
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: test")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=DEFAULT_SPLIT_SEED,
        help=f"seed of the train45k/val5k hold-out (default: {DEFAULT_SPLIT_SEED})",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default="repro",
        choices=SOURCES,
        help="who wrote the checkpoint (default: repro, this project; any other: repro verify)",
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=AKAMASTER_MODELS,
        help="with --from akamaster: the network the file holds",
    )
    parser.add_argument(
        TRUST_FLAG,
        dest="trust_pickle",
        action="store_true",
        help="load a checkpoint that needs full unpickling (objects other than tensors and plain "
        "values), which can run code the file carries: only for files from a source you trust",
    )
    add_device(parser)
    parser.add_argument("--batch-size", type=int, default=1024, help="default: 1024")
    add_json(parser)


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model and what to report about it: name, normalisation and its source, extras."""
    path = Path(args.checkpoint)
    if args.source == "akamaster":
        if args.model is None:
            raise ReproError(
                "--from akamaster needs --model (resnet20, resnet32, resnet44, resnet56, "
                "resnet110 or resnet1202): their files do not record the depth"
            )
        ckpt = load_akamaster(path, args.model, trust_pickle=args.trust_pickle)
        info: dict[str, Any] = {
            "model": ckpt.model_name,
            "normalize": "imagenet",
            "mean": list(ckpt.mean),
            "std": list(ckpt.std),
            "norm_source": "ImageNet constants, which akamaster trained with",
            "best_prec1": ckpt.best_prec1,
        }
        return ckpt.model, info
    if args.model is not None:
        raise ReproError(
            "--model is only for --from akamaster; this project's checkpoints name their model"
        )
    model, state = model_from_checkpoint(path, trust_pickle=args.trust_pickle)
    norm = checkpoint_normalization(state, f"checkpoint {path}")
    info = {
        "model": state["model_name"],
        "model_kwargs": dict(state["model_kwargs"]),
        "normalize": norm.name,
        "mean": norm.mean,  # a mean image (tensor) for per-pixel-mean
        "std": list(norm.std),
        "norm_source": norm.source,
        "iteration": state.get("iteration"),
    }
    return model, info


def normalization_info(info: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` normalisation record: its name and per-channel mean/std (null for a mean
    image, which is not printed)."""
    image = isinstance(info["mean"], torch.Tensor)
    return {
        "name": info["normalize"],
        "mean": None if image else list(info["mean"]),
        "std": None if image else info["std"],
        "source": info["norm_source"],
    }


def report(args: argparse.Namespace, info: dict, result: EvalResult, data: Any) -> dict:
    """The ``--json`` dict."""
    out = {
        "checkpoint": str(args.checkpoint),
        "from": args.source,
        "model": info["model"],
        "split": args.split,
        "n": result.n,
        "error": result.error_percent,
        "loss": result.loss,
        "per_class_accuracy": result.per_class_by_name(data.classes),
        "normalization": normalization_info(info),
        "data_root": str(data.root),
        "data_official": data.official,
    }
    if args.split in ("train45k", "val5k"):
        out["split_seed"] = args.split_seed
    for key in ("model_kwargs", "iteration", "best_prec1"):
        if key in info:
            out[key] = info[key]
    return out


def format_report(out: dict, data: Any) -> str:
    """A short table: overall error and loss, then accuracy per class."""
    name = out["model"]
    if out.get("model_kwargs"):
        name += "(" + ", ".join(f"{k}={v!r}" for k, v in out["model_kwargs"].items()) + ")"
    if out.get("iteration") is not None:
        name += f" (iteration {out['iteration']})"
    norm = out["normalization"]
    shown = (
        f"{norm['name']} ({norm['source']})"
        if norm["mean"] is None
        else f"mean {tuple(round(v, 4) for v in norm['mean'])} "
        f"std {tuple(round(v, 4) for v in norm['std'])} ({norm['source']})"
    )
    lines = [
        f"checkpoint  {out['checkpoint']}",
        f"model       {name}",
        f"data        {data.summary()}",
        f"normalise   {shown}",
        "",
        f"{out['split']} error  {out['error']:6.2f} %   loss {out['loss']:.4f}   "
        f"({out['n']} images)",
    ]
    if out.get("best_prec1") is not None:
        lines.append(
            f"akamaster best_prec1 {out['best_prec1']:.2f} % "
            f"(error {100 - out['best_prec1']:.2f} % as recorded in the file)"
        )
    if not out["data_official"]:
        lines.append("note: a SUBSET of CIFAR-10, not comparable with published errors")
    width = max(len(c) for c in out["per_class_accuracy"])
    lines += ["", f"{'class'.ljust(width)}  accuracy"]
    for cls, acc in out["per_class_accuracy"].items():
        shown = "-" if acc is None else f"{acc:6.2f} %"
        lines.append(f"{cls.ljust(width)}  {shown}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ReproError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    model, info = load_model(args)
    problem = weights_problem(model.state_dict())  # NaN weights give NaN logits: no measurement
    if problem:
        raise ReproError(f"checkpoint {args.checkpoint}: {problem}")
    data = load_cifar10(resolve_data_root(args.data_root))
    images, labels = get_split(data, args.split, seed=args.split_seed)
    if labels.numel() == 0:
        raise ReproError(f"split {args.split} of {data.root} has no images")
    model.to(device)
    try:
        result = evaluate(
            model,
            images,
            labels,
            info["mean"],
            info["std"],
            batch_size=args.batch_size,
            device=device,
            num_classes=len(data.classes),
        )
    except ValueError as exc:
        raise ReproError(f"cannot evaluate {args.checkpoint}: {exc}") from None
    refuse_nan_logits(result, f"checkpoint {args.checkpoint}")
    out = report(args, info, result, data)
    print(json.dumps(out, indent=2) if args.json else format_report(out, data))
    return 0
