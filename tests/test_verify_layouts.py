"""`repro verify` reads option A in every layout seen in the wild, folds conv biases into BN,
takes any normalisation, names Keras files, reads training counters, refuses before reading
data, and never reports a chance-level reading as a success (issue 23; issue 21 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import one_clear_line, run_repro
from foreign_nets import TheirNet, taught_cifar

from repro.data import CIFAR10_MEAN, load_cifar10
from repro.errors import ReproError
from repro.evaluate import EvalResult
from repro.foreign.layouts import LAYOUTS, Layout, parse_layout
from repro.foreign.readings import Reading, decide, readings
from repro.foreign.structure import Candidate, Match, folded_biases
from repro.foreign.verify import load_foreign, verify

COMMON_STD = (0.2023, 0.1994, 0.2010)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def reading_in(path: Path, layout: Layout | None, name: str = "resnet8") -> Reading:
    found = readings(load_foreign(path), path)
    (r,) = [r for r in found if r.match.candidate.name == name and r.layout == layout]
    return r


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.describe().replace(" ", ""))
def test_each_option_a_layout_is_a_reading_with_the_authors_logits(tmp_path, layout) -> None:
    """Every layout's reading computes exactly what an independent implementation of it does."""
    torch.manual_seed(0)
    theirs = TheirNet(8, layout=(layout.padding, layout.subsample)).eval()
    path = save(theirs.state_dict(), tmp_path / "a.pt")
    x = torch.randn(3, 3, 16, 16)
    ours = reading_in(path, layout).model.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    other = next(lay for lay in LAYOUTS if lay != layout)
    assert not torch.allclose(reading_in(path, other).model.eval()(x), theirs(x), atol=1e-3)


@pytest.mark.parametrize(
    "layout",
    [
        ("after", "strided"),
        pytest.param(("split", "avg-pool"), marks=pytest.mark.slow),
        pytest.param(("before", "max-pool"), marks=pytest.mark.slow),
    ],
)
def test_function_chooses_the_authors_layout_with_exit_0(tmp_path, capsys, layout) -> None:
    """The issue's misreadings (all-after padding read as split; an average-pool shortcut read
    as strided): the right net, the right error, exit 0, every reading listed in --json."""
    torch.manual_seed(1)
    theirs = TheirNet(8, layout=layout)
    data = taught_cifar(tmp_path / "data", theirs, CIFAR10_MEAN, COMMON_STD, n_test=100)
    path = save({"state_dict": theirs.state_dict()}, tmp_path / "r8.pth")
    rc, out, err = run_repro(
        capsys, "verify", str(path), "--normalize", "cifar-common", "--data-root", str(data),
        "--json",
    )  # fmt: skip
    result = json.loads(out)
    assert rc == 0 and result["model"] == "resnet8" and result["test"]["error"] == 0.0
    assert result["layout"] == {"padding": layout[0], "subsample": layout[1]}
    assert len(result["readings"]) == 13  # 12 option-A layouts and plain8
    assert sorted(r["test_error"] for r in result["readings"])[1] > 50  # the rest near chance
    assert result["decided_by"].startswith("function:") and "inconclusive" not in err


def test_layout_flag_reads_one_layout_and_bad_values_are_one_line(tmp_path, capsys) -> None:
    torch.manual_seed(2)
    path = save(TheirNet(8, layout=("after", "avg-pool")).state_dict(), tmp_path / "a.pt")
    found = readings(load_foreign(path), path, "resnet8", parse_layout("after,avg-pool"))
    assert [r.name for r in found] == ["resnet8 [A: pad after, avg-pool]"]
    line = one_clear_line(*run_repro(capsys, "verify", str(path), "--layout", "after,bilinear"))
    assert "--layout 'after,bilinear'" in line and "max-pool" in line
    b = save(TheirNet(8, "B").state_dict(), tmp_path / "b.pt")
    line = one_clear_line(*run_repro(capsys, "verify", str(b), "--layout", "after,strided"))
    assert "--layout is for option-A ResNets" in line


# --- never a chance-level success ----------------------------------------------------------------


def fake(name: str, error: float, n: int = 10_000, layout: Layout | None = None) -> Reading:
    """A reading with a given test error (decide() looks at the results only)."""
    candidate = Candidate(name, name, {}, "A" if layout else None)
    r = Reading(Match(candidate, [], None, 0), torch.nn.Identity(), layout)
    r.result = EvalResult(1.0, error, (None,) * 10, (0,) * 10, n)
    return r


def test_two_readings_near_chance_are_refused_not_decided() -> None:
    """The issue's case: 88.10 % against 90.95 % was reported as resnet32, exit 0."""
    found = [fake("resnet32", 88.10, layout=Layout()), fake("plain32", 90.95)]
    with pytest.raises(ReproError, match="no reading of the weights is plausible") as exc:
        decide(found, None, 10, Path("r32.th"))
    assert "resnet32 [A: pad split, strided] 88.10 %" in str(exc.value)
    assert "plain32 90.95 %" in str(exc.value)
    best, how, _ = decide([fake("resnet32", 7.77, layout=Layout()), fake("plain32", 90.9)], None)
    assert best.name.startswith("resnet32") and how.startswith("function:")


def test_a_lone_reading_at_chance_is_refused_and_above_half_is_warned() -> None:
    with pytest.raises(ReproError, match="chance level"):
        decide([fake("resnet14", 89.0)], None)
    best, _, warnings = decide([fake("resnet14", 51.62)], None)  # one epoch (the case)
    assert best.name == "resnet14" and "above 50 %" in warnings[0]


def test_untrained_weights_on_real_looking_labels_exit_non_zero(
    tmp_path, synthetic_cifar, capsys
) -> None:
    """Random weights, random labels: every reading is at chance, so the command refuses and
    lists what it tried; nothing is written."""
    torch.manual_seed(3)
    path = save(TheirNet(8).state_dict(), tmp_path / "r8.pt")
    plot = tmp_path / "fig7.png"
    argv = [str(path), "--normalize", "per-channel", "--data-root", str(synthetic_cifar)]
    line = one_clear_line(*run_repro(capsys, "verify", *argv, "--plot", str(plot), "--json"))
    assert "no reading of the weights is plausible" in line and "all 13 tried" in line
    assert "plain8" in line and "pad after, max-pool" in line and not plot.exists()
    b = save(TheirNet(8, "B").state_dict(), tmp_path / "b8.pt")
    line = one_clear_line(*run_repro(capsys, "verify", str(b), *argv[1:]))
    assert "the only reading of the weights" in line and "chance level" in line


# --- conv bias + BN folded -----------------------------------------------------------------------


def test_a_conv_bias_before_bn_folds_exactly_into_the_running_mean(tmp_path) -> None:
    torch.manual_seed(4)
    theirs = TheirNet(8, "B", bias=True).eval()
    path = save(theirs.state_dict(), tmp_path / "bias.pt")
    (r,) = readings(load_foreign(path), path)
    assert folded_biases(r.match) == 9  # the stem, 2 per block, 2 projections
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(r.model.eval()(x), theirs(x), rtol=1e-5, atol=1e-5)
    unfolded = {k: (torch.zeros_like(v) if k.endswith("bias") and v.dim() == 1 else v)
                for k, v in theirs.state_dict().items()}  # fmt: skip
    theirs.load_state_dict(unfolded)
    assert not torch.allclose(r.model(x), theirs(x), atol=1e-3)  # the biases mattered


def test_a_folded_bias_is_reported_as_a_structural_note(tmp_path) -> None:
    torch.manual_seed(5)
    theirs = TheirNet(8, "C", bias=True)
    data = load_cifar10(taught_cifar(tmp_path / "d", theirs, CIFAR10_MEAN, COMMON_STD, n_test=60))
    path = save(theirs.state_dict(), tmp_path / "c8.pt")
    out = verify(path, "cifar-common", data)
    assert out["test"]["error"] == 0.0
    assert any("10 convolution biases folded" in note for note in out["notes"])


# --- normalisation on the command line -----------------------------------------------------------


def test_mean_and_std_on_either_scale_and_a_warning_for_a_worse_choice(tmp_path, capsys) -> None:
    torch.manual_seed(6)
    theirs = TheirNet(8, "B")
    data = taught_cifar(tmp_path / "d", theirs, CIFAR10_MEAN, COMMON_STD, n_test=100)
    path = save(theirs.state_dict(), tmp_path / "b8.pt")
    base = ["verify", str(path), "--data-root", str(data), "--json"]
    for mean, std, scale in (
        ("0.4914,0.4822,0.4465", "0.2023,0.1994,0.2010", "0-1 scale"),
        ("125.307,122.961,113.857", "51.587,50.847,51.255", "0-255 scale"),
        # each flag has its own scale: a 0-255 mean beside a 0-1 std (was read as 85 % error)
        ("125.307,122.961,113.857", "0.2023,0.1994,0.2010", "mean on the 0-255 scale"),
    ):
        rc, out, _ = run_repro(capsys, *base, "--mean", mean, "--std", std)
        result = json.loads(out)
        assert rc == 0 and result["test"]["error"] == 0.0
        assert scale in result["normalization"]["source"]
    rc, out, err = run_repro(capsys, *base, "--normalize", "per-channel")
    assert rc == 0 and json.loads(out)["test"]["error"] > 5.0
    assert "normalisation cifar-common scores 0.00 %" in err
    (tmp_path / "b8.pt.json").write_text(
        json.dumps({"mean": [0.4914, 0.4822, 0.4465], "std": COMMON_STD})
    )
    rc, out, err = run_repro(capsys, *base)
    assert rc == 0 and json.loads(out)["normalization"]["source"].startswith("sidecar b8.pt.json")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--mean", "0.5,0.5,0.5"], "--mean and --std go together"),
        (["--mean", "0.5,0.5", "--std", "1,1,1"], "--mean '0.5,0.5': give three numbers"),
        (["--mean", "0.5,0.5,0.5", "--std", "0,1,1"], "every std must be > 0"),
        (["--mean", "0.5,0.5,nan", "--std", "1,1,1"], "3 finite numbers"),
        (["--normalize", "imagenet", "--mean", "1,1,1", "--std", "1,1,1"], "not both"),
    ],
)
def test_bad_normalisation_flags_are_one_line(tmp_path, capsys, argv, expected) -> None:
    path = save(TheirNet(8, "B").state_dict(), tmp_path / "b8.pt")
    line = one_clear_line(*run_repro(capsys, "verify", str(path), *argv))
    assert expected in line


# --- other frameworks, training state, damaged weights, refusing before the data ------------------


def test_a_keras_hdf5_file_is_named_as_such(tmp_path, capsys) -> None:
    path = tmp_path / "resnet20.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(2048))
    line = one_clear_line(*run_repro(capsys, "verify", str(path), "--normalize", "imagenet"))
    assert "is a Keras/TensorFlow HDF5 file" in line and "torch.save" in line
    assert "truncated or corrupt" not in line


def test_training_state_is_read_from_the_file(tmp_path) -> None:
    torch.manual_seed(7)
    theirs = TheirNet(8, "B")
    data = load_cifar10(taught_cifar(tmp_path / "d", theirs, CIFAR10_MEAN, COMMON_STD, n_test=60))
    state = theirs.state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(391)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    path = save({"state_dict": state, "epoch": 1, "optimizer": opt.state_dict()}, tmp_path / "e.pt")
    notes = verify(path, "cifar-common", data)["notes"]
    assert any("BN statistics from 391 batches (~1.0 epochs at batch 128" in n for n in notes)
    assert "epoch counter 'epoch' = 1" in notes and any("lr 0.1" in n for n in notes)


@pytest.mark.parametrize("damage", ["nan", "inf", "negative variance"])
def test_damaged_weights_are_no_measurement(tmp_path, synthetic_cifar, capsys, damage) -> None:
    state = TheirNet(8, "B").state_dict()
    key = "stages.1.0.norm_a.running_var" if damage == "negative variance" else "stem.0.weight"
    state[key] = state[key].clone()
    state[key].view(-1)[0] = {"nan": float("nan"), "inf": float("inf")}.get(damage, -1.0)
    path = save(state, tmp_path / "bad.pt")
    argv = [str(path), "--normalize", "imagenet", "--data-root", str(synthetic_cifar)]
    line = one_clear_line(*run_repro(capsys, "verify", *argv))
    assert repr(key) in line
    assert ("negative running variances" if damage == "negative variance" else "NaN") in line


def test_structure_is_refused_before_the_data_set_is_read(tmp_path, capsys) -> None:
    state = TheirNet(8).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("stages.2.")}
    path = save(state, tmp_path / "cut.pt")
    argv = [str(path), "--normalize", "imagenet", "--data-root", str(tmp_path / "no-data")]
    line = one_clear_line(*run_repro(capsys, "verify", *argv))
    assert "missing layers" in line  # not "no CIFAR-10 at ...": the data was never looked at


@pytest.mark.parametrize("damage", ["nan", "negative variance"])
def test_repro_evaluate_refuses_damaged_weights_too(tmp_path, synthetic_cifar, capsys, damage):
    from repro.models import build_model
    from repro.train.checkpoint import save_checkpoint

    state = build_model("resnet_cifar", depth=8).state_dict()
    key = "layer2.0.bn1.running_var" if damage != "nan" else "conv1.weight"
    state[key].view(-1)[0] = float("nan") if damage == "nan" else -1.0
    path = tmp_path / "bad.pt"
    config = {"model": "resnet_cifar", "mean": [0.5] * 3, "std": [0.25] * 3}
    checkpoint = {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}, "model": state}
    save_checkpoint({**checkpoint, "iteration": 1, "config": config}, path)
    argv = ["evaluate", str(path), "--data-root", str(synthetic_cifar)]
    line = one_clear_line(*run_repro(capsys, *argv))
    assert repr(key) in line and ("no measurement" in line or "negative" in line)


def test_a_refusal_for_the_wrong_normalisation_names_the_one_that_works(tmp_path, capsys):
    torch.manual_seed(2)
    theirs = TheirNet(8, "B", bias=True)
    data = taught_cifar(tmp_path / "d", theirs, CIFAR10_MEAN, COMMON_STD, n_test=200)
    path = save(theirs.state_dict(), tmp_path / "b8.pt")
    argv = ["verify", str(path), "--normalize", "per-channel", "--data-root", str(data)]
    line = one_clear_line(*run_repro(capsys, *argv))
    assert "chance level" in line and "with --normalize cifar-common, resnet8 scores 0.00 %" in line
