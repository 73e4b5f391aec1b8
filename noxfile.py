"""Sessions: `unit` (fast tests, CPU), `slow` (the slow CPU tests), `lint` (ruff, mypy), `reproduce`
(the mini reproduction and its report), `acceptance` (trainings + the paper's claims), `bench`, `gpu`
(the time-boxed GPU check, scripts/gpu-check.sh)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["unit", "lint"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs under; the project supports >= 3.10


def install(session: nox.Session) -> None:
    """The project with its dev extras; uv resolves torch and torchvision from the registry together."""
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Fast unit and property tests (no GPU, no slow tests), with the real-data tests when present."""
    install(session)
    session.run("pytest", "-m", "not slow and not gpu and not slurm", *session.posargs)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """The slow CPU tests: kill -9 / resume, DDP with 2 processes, torch.compile, smoke matrix."""
    install(session)
    session.run("pytest", "-m", "slow and not gpu and not slurm", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy over repro/."""
    install(session)  # the project with its dev extras: mypy needs torch to check repro/
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")  # [tool.mypy] in pyproject.toml: files = ["repro"]


# --- reproduction and acceptance -----------------------------------------------------------

MINI_DATA = "../shared/data/cifar-10-mini"  # the 5,085-image subset beside the checkout
PRECHECK = """
import sys
from repro.data import resolve_data_root
from repro.errors import ReproError
from repro.experiments import get_preset
from repro.reproduce.runner import check_requirements
try:
    check_requirements(get_preset(sys.argv[1]), resolve_data_root(sys.argv[2] or None), None, False)
except ReproError as exc:
    print(exc)
"""


def _options(session: nox.Session, defaults: dict[str, str]) -> dict[str, str]:
    """``-- --preset P --experiment E --run-dir D --data-root R --seeds K --parallel K``."""
    opts, args = dict(defaults), list(session.posargs)
    while args:
        flag = args.pop(0)
        key = flag.removeprefix("--").replace("-", "_")
        if not flag.startswith("--") or key not in opts or not args:
            known = ", ".join("--" + k.replace("_", "-") for k in opts)
            session.error(f"unknown or incomplete option {flag!r}; options: {known} (each + VALUE)")
        opts[key] = args.pop(0)
    if not opts["data_root"] and opts["preset"] in ("mini", "smoke"):
        opts["data_root"] = os.environ.get("REPRO_DATA") or (
            MINI_DATA if Path(MINI_DATA).is_dir() else ""
        )
    return opts


def _train(session: nox.Session, opts: dict[str, str]) -> str:
    """Check the preset's needs first (one plain message), then `repro reproduce`; the run dir."""
    problem = session.run("python", "-c", PRECHECK, opts["preset"], opts["data_root"], silent=True)
    if problem and problem.strip():
        session.error(
            f"{problem.strip()}\nThis machine cannot run preset {opts['preset']}. Instead run "
            "`nox -s acceptance -- --preset mini` (CPU, the 5,085-image subset) or "
            "`-- --preset smoke` (plumbing only)."
        )
    run_dir = opts["run_dir"] or f"runs/{opts['experiment']}-{opts['preset']}"
    cmd = [
        "repro",
        "reproduce",
        "--experiment",
        opts["experiment"],
        "--preset",
        opts["preset"],
        "--out",
        run_dir,
        "--seeds",
        opts["seeds"],
        "--parallel",
        opts["parallel"],
    ]
    if opts["data_root"]:
        cmd += ["--data-root", opts["data_root"]]
    session.run(*cmd)
    return run_dir


@nox.session(python=PYTHON)
def acceptance(session: nox.Session) -> None:
    """Train `core`/`common` (or -- --preset/--experiment) and assert the paper's claims on it;
    `-- --run-dir DIR` asserts on an existing run without training."""
    install(session)
    given_run = "--run-dir" in session.posargs
    opts = _options(
        session,
        {
            "preset": "common",
            "experiment": "core",
            "run_dir": "",
            "data_root": "",
            "seeds": "1",
            "parallel": "1",
        },
    )
    run_dir = opts["run_dir"] if given_run else _train(session, opts)
    # The Fig. 7 claims need layer_response.json of exactly these checkpoints (they refuse a
    # stale one): compute it from the run's final.pt files every time.
    session.run("repro", "analyze", "layer-response", run_dir)
    session.run("pytest", "acceptance", "--run-dir", run_dir, "-p", "no:cacheprovider")


@nox.session(python=PYTHON)
def reproduce(session: nox.Session) -> None:
    """`repro reproduce --experiment core --preset mini` (CPU, the subset), the layer responses
    (Fig. 7), then `repro report`. One training at a time, using every core: on 2 quiet cores
    that took 730 s against 923 s for `-- --parallel 2` (reports/performance.md)."""
    install(session)
    opts = _options(
        session,
        {
            "preset": "mini",
            "experiment": "core",
            "run_dir": "",
            "data_root": "",
            "seeds": "1",
            "parallel": "1",
        },
    )
    run_dir = _train(session, opts)
    session.run("repro", "analyze", "layer-response", run_dir)
    # the report is written whatever its verdicts; its exit status is theirs (0 pass, 1 a check
    # failed, 3 not all assessed: repro.claims.exit_status), judged by `nox -s acceptance`
    session.run("repro", "report", run_dir, success_codes=[0, 1, 3])


def bench_arguments(posargs: list[str]) -> list[str]:
    """pytest arguments for `nox -s bench -- ...`: --save NAME, --compare [ID], --all, the rest as is."""
    args, rest = ["--benchmark-json=.benchmarks/last-run.json"], list(posargs)
    run_all = "--all" in rest
    while rest:
        arg = rest.pop(0)
        if arg == "--save":
            if not rest or rest[0].startswith("-"):
                raise ValueError(
                    "--save needs a name, e.g. `nox -s bench -- --save before-compile`"
                )
            args.append(f"--benchmark-save={rest.pop(0)}")
        elif arg == "--compare":
            baseline = rest.pop(0) if rest and not rest[0].startswith("-") else None
            args += [
                f"--benchmark-compare={baseline}" if baseline else "--benchmark-compare",
                "--benchmark-compare-fail=median:10%",
            ]
        elif arg != "--all":
            args.append(arg)
    if not run_all and "-m" not in args:
        args += ["-m", "not slow"]
    return args


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks on the default device (training step, evaluation, data pipeline).

    nox -s bench                    run them; JSON in .benchmarks/last-run.json
    nox -s bench -- --save NAME     also keep the run as a baseline (.benchmarks/<machine>/NNNN_NAME.json)
    nox -s bench -- --compare [ID]  fail on a median > 10% slower than baseline ID (default: the latest)
    nox -s bench -- --all           include the slow ones (torch.compile on the CPU)
    Anything else goes to pytest, e.g. `-k resnet56`.
    """
    try:
        args = bench_arguments(session.posargs)
    except ValueError as exc:
        session.error(str(exc))
    if any(a.startswith("--benchmark-compare") for a in args) and not any(
        Path(".benchmarks").glob("*/*.json")
    ):
        session.error("no saved baseline to compare with: run `nox -s bench -- --save NAME` first")
    install(session)
    Path(".benchmarks").mkdir(exist_ok=True)
    session.run("pytest", "tests/benchmarks", "--benchmark-only", *args)


# --- a real Slurm cluster ---------------------------------------------------------------------

SLURM_LOCAL = Path("scripts/slurm-local")


@nox.session(python=PYTHON)
def slurm(session: nox.Session) -> None:
    """`--launcher slurm` against a real single-node Slurm cluster (tests marked `slurm`): as root
    on Debian, scripts/slurm-local/start.sh installs and starts one (munged, mariadbd, slurmdbd,
    slurmctld, slurmd) in a temporary folder; stop.sh then stops exactly those PIDs, always.
    Skipped in one line where root or apt-get is missing."""
    import shutil
    import tempfile

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.skip("nox -s slurm needs root and apt-get (Debian) to install and start Slurm")
    install(session)
    # the jobs run this venv's Python; with PYTHONDONTWRITEBYTECODE each would compile torch anew
    site = session.run(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True
    ).strip()
    compile_all = ("python", "-m", "compileall", "-q", "-j", "0", site, "repro")
    session.run(*compile_all, success_codes=[0, 1], silent=True)  # a few test files are 3.12
    state = tempfile.mkdtemp(prefix="repro-slurm-")
    env = {"SLURM_CONF": f"{state}/slurm.conf", "REPRO_SLURM_TESTS": "1"}
    try:
        session.run("bash", str(SLURM_LOCAL / "start.sh"), state, external=True)
        session.run("pytest", "-m", "slurm", "-p", "no:cacheprovider", *session.posargs, env=env)
    finally:
        session.run("bash", str(SLURM_LOCAL / "stop.sh"), state, "--clean", external=True)


# --- the GPU check ---------------------------------------------------------------------------


@nox.session(python=PYTHON)
def gpu(session: nox.Session) -> None:
    """The GPU check, `scripts/gpu-check.sh OUT_DIR [--rehearse] [--data-root DIR]` (default
    OUT_DIR: runs/gpu-check-<UTC time>); under 9 minutes on one H100, `-- OUT --rehearse` on the CPU
    in under 3. Where nox is absent (the GPU machine), run the script itself."""
    install(session)
    args = list(session.posargs)
    if not args or args[0].startswith("-"):
        args.insert(0, time.strftime("runs/gpu-check-%Y%m%d-%H%M%S", time.gmtime()))
    session.run("bash", "scripts/gpu-check.sh", *args, external=True)
