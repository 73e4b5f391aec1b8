"""Read an ONNX model's weights as a state_dict that `repro verify` maps by structure.

An ONNX file is a graph of nodes whose weights are initializers (or ``Constant`` nodes). Its
``Conv``, ``BatchNormalization`` and linear nodes (``Gemm``, or ``MatMul`` + ``Add``) are read in
graph order, which ONNX requires to be topological (the order of the forward pass), and written as
one state_dict layer each: ``<node>.weight`` / ``bias`` / ``running_mean`` / ``running_var``.
:mod:`repro.foreign.structure` then matches them to the paper's nets (He et al. 2016, Sec. 4.2:
3x3 convolutions each followed by BN) like any PyTorch file, never by name.

Exporters of an evaluation-mode net often fold each BN into the convolution before it (the graph
then has ``Conv`` with a bias and no ``BatchNormalization``). Such a convolution is read back as
the convolution without bias and a BN with unit scale, zero mean, unit variance and the bias as
its shift: the same function, so the error and the layer responses of Fig. 7 (the BN outputs)
are unchanged. A BN's ``epsilon`` other than PyTorch's 1e-5 is moved into its variance.

The graph is read with the ``onnx`` package (``pip install 'resnet-repro[onnx]'``), imported
only here. No graph code is run and no converter to PyTorch modules is needed (onnx2torch 1.5.15
and onnx2pytorch 0.6.0 each failed on a ResNet-20 exported by torch 2.15; see the README): only
the weights are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.errors import ReproError

TORCH_BN_EPS = 1e-5  # nn.BatchNorm2d's default, which the reference nets use
LINEAR_OPS = ("Gemm", "MatMul")
INSTALL = "pip install 'resnet-repro[onnx]' (or pip install onnx)"


def _import_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise ReproError(
            f"checkpoint {path} is an ONNX model; reading its weights needs the onnx package: "
            f"{INSTALL}"
        ) from None
    return onnx


def load_onnx_graph(path: Path) -> Any:
    """The model's graph (external data loaded), or one ReproError naming the file."""
    onnx = _import_onnx(path)
    try:
        return onnx.load(str(path)).graph
    except Exception as exc:  # protobuf's DecodeError and the onnx loader's own errors
        raise ReproError(
            f"checkpoint {path} is not a readable ONNX model ({type(exc).__name__}: "
            f"{str(exc)[:120]}); use an intact copy"
        ) from None


def constants(graph: Any) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph by name: initializers and ``Constant`` nodes' values."""
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = numpy_helper.to_array(attr.t)
    return found


def attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


class GraphWeights:
    """The state_dict under construction: layers in graph order, and what reading them did."""

    def __init__(self, graph: Any, path: Path) -> None:
        self.graph, self.path = graph, path
        self.consts = constants(graph)
        self.state: dict[str, torch.Tensor] = {}
        self.unfolded = 0  # convolutions read as conv + BN (the exporter had folded the BN)
        self.names: set[str] = set()
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def prefix(self, node: Any, index: int) -> str:
        """A unique layer name: the node's name (or ``node<index>``)."""
        name = node.name or f"node{index}"
        if name in self.names:
            name = f"{name}#{index}"
        self.names.add(name)
        return name

    def const(self, node: Any, position: int, what: str) -> np.ndarray:
        """The constant at input ``position`` of ``node``; ReproError if it is computed."""
        name = node.input[position] if position < len(node.input) else ""
        if name not in self.consts:
            raise ReproError(
                f"checkpoint {self.path}: the {what} of ONNX node {node.name or node.op_type} "
                f"({name or 'absent'}) is not a constant in the graph, so its weights cannot be read"
            )
        return self.consts[name]

    def feeds_bn(self, node: Any) -> bool:
        return any(
            c.op_type == "BatchNormalization" for c in self.consumers.get(node.output[0], [])
        )

    def conv(self, node: Any, index: int) -> None:
        name = self.prefix(node, index)
        self.state[f"{name}.weight"] = _tensor(self.const(node, 1, "weight"))
        if len(node.input) < 3 or not node.input[2]:
            return
        bias = _tensor(self.const(node, 2, "bias"))
        if self.feeds_bn(node):
            self.state[f"{name}.bias"] = bias  # structure folds it into the BN after it
            return
        self.unfolded += 1  # BN folded into this conv by the exporter: unfold it, same function
        bn = f"{name}/BatchNormalization"
        width = bias.shape[0]
        self.state[f"{bn}.weight"] = torch.ones(width)
        self.state[f"{bn}.bias"] = bias
        self.state[f"{bn}.running_mean"] = torch.zeros(width)
        self.state[f"{bn}.running_var"] = torch.full((width,), 1.0 - TORCH_BN_EPS)

    def batch_norm(self, node: Any, index: int) -> None:
        name = self.prefix(node, index)
        eps = float(attributes(node).get("epsilon", TORCH_BN_EPS))
        roles = ("weight", "bias", "running_mean", "running_var")
        for position, role in enumerate(roles, start=1):
            self.state[f"{name}.{role}"] = _tensor(self.const(node, position, role))
        self.state[f"{name}.running_var"] += eps - TORCH_BN_EPS

    def linear(self, node: Any, index: int) -> None:
        """``Gemm`` (alpha, beta, transB honoured) or ``MatMul`` by a constant (+ ``Add``)."""
        attrs = attributes(node)
        if node.op_type == "MatMul" and node.input[1] not in self.consts:
            return  # a product of two computed tensors holds no weights
        if attrs.get("transA", 0):
            raise ReproError(
                f"checkpoint {self.path}: ONNX node {node.name or 'Gemm'} transposes its input "
                "(transA=1): not a linear layer of a CIFAR net"
            )
        weight = _tensor(self.const(node, 1, "weight")) * float(attrs.get("alpha", 1.0))
        if not attrs.get("transB", 0):  # ONNX computes x @ B; torch stores W = B^T
            weight = weight.T.contiguous()
        name = self.prefix(node, index)
        self.state[f"{name}.weight"] = weight
        bias = self.linear_bias(node, attrs)
        if bias is not None:
            self.state[f"{name}.bias"] = bias

    def linear_bias(self, node: Any, attrs: dict[str, Any]) -> torch.Tensor | None:
        if node.op_type == "Gemm":
            if len(node.input) < 3 or not node.input[2]:
                return None
            return _tensor(self.const(node, 2, "bias")) * float(attrs.get("beta", 1.0))
        for add in self.consumers.get(node.output[0], []):
            other = [n for n in add.input if n != node.output[0] and n in self.consts]
            if add.op_type == "Add" and other and self.consts[other[0]].ndim == 1:
                return _tensor(self.consts[other[0]])
        return None


PREPROCESSING_OPS = ("Sub", "Div", "Mul", "Add")


def input_preprocessing(graph: Any) -> list[str]:
    """The arithmetic with constants that the graph does before its first ``Conv``: a
    normalisation built into the model (``Sub`` mean, ``Div`` std), which `repro verify` does not
    run (it applies the normalisation it is given)."""
    consts = {t.name for t in graph.initializer} | {
        n.output[0] for n in graph.node if n.op_type == "Constant"
    }
    found = []
    for node in graph.node:
        if node.op_type == "Conv":
            break
        if node.op_type in PREPROCESSING_OPS and any(i in consts for i in node.input):
            found.append(node.op_type)
    return found


def onnx_state_dict(graph: Any, path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """(the graph's layers as a state_dict in graph order, how many convolutions carried a BN
    that the exporter had folded into them and were read back as conv + BN)."""
    weights = GraphWeights(graph, path)
    readers = {"Conv": weights.conv, "BatchNormalization": weights.batch_norm}
    for index, node in enumerate(graph.node):
        if node.op_type in readers:
            readers[node.op_type](node, index)
        elif node.op_type in LINEAR_OPS:
            weights.linear(node, index)
    if not weights.state:
        raise ReproError(
            f"checkpoint {path} is an ONNX model without Conv, BatchNormalization or linear "
            "nodes whose weights are constants: nothing to map onto the paper's nets"
        )
    return weights.state, weights.unfolded
