"""summary.md: every stage's status and figures, from the stages' JSON files as they are now
(rewritten after each stage, so a check cut short still leaves a summary of what ran). Its
sections are the ones of the "GPU check" section of reports/performance.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.fileio import atomic_write
from repro.tables import markdown_table
from scripts.gpu_check.common import FILES, STAGES, SUMMARY, TITLES, read_stage


def num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if not isinstance(x, (int, float)) or isinstance(x, bool) else format(x, fmt)


def device_title(env: dict[str, Any]) -> str:
    """The GPU's name (nvidia-smi, else torch), else the CPU's."""
    gpus = (env.get("nvidia_smi") or {}).get("gpus") or []
    if gpus:
        return f"{gpus[0].get('name')} (driver {gpus[0].get('driver_version')})"
    devices = (env.get("repro_env") or {}).get("devices") or {}
    if devices.get("cuda"):
        return str(devices["cuda"][0]["name"])
    return f"CPU: {devices.get('cpu', 'device not yet known')}"


def stage_table(out: Path) -> str:
    rows, seconds, budget = [], 0.0, 0.0
    for i, stage in enumerate(STAGES, 1):
        s = read_stage(out, stage).get("stage") or {}
        seconds += s.get("seconds") or 0.0
        budget += s.get("budget_s") or 0.0
        rows.append(
            [
                i,
                TITLES[stage],
                s.get("status", "not run yet"),
                num(s.get("seconds"), ".1f"),
                num(s.get("budget_s"), "g"),
                FILES[stage],
                s.get("error") or "",
            ]
        )
    rows.append(["", "in all", "", num(seconds, ".1f"), num(budget, "g"), "", ""])
    return markdown_table(["#", "stage", "status", "seconds", "budget s", "file", "error"], rows)


def env_section(env: dict[str, Any]) -> list[str]:
    r = env.get("repro_env") or {}
    v = r.get("versions") or {}
    lines = [", ".join(f"{k} {val}" for k, val in v.items() if val is not None) or "versions: -"]
    for g in (r.get("devices") or {}).get("cuda") or []:
        lines.append(f"cuda:{g['index']} {g['name']}, {g['memory_gib']} GiB, sm {g['capability']}")
    if r.get("status") not in (None, "ok"):
        lines.append(f"repro env: {r['status']}")
    c = r.get("compile") or {}
    lines.append(f"torch.compile check: {c.get('status', '-')} {c.get('reason', '')}".rstrip())
    d = r.get("data") or {}
    if d:
        lines.append(f"data: {d.get('folder') or d.get('root')}, counts {d.get('counts', '-')}")
    p = env.get("pytest")
    if p:
        counts = ", ".join(
            f"{p.get(k, '-')} {k}" for k in ("passed", "failures", "errors", "skipped")
        )
        cut = "; cut by its time box" if p.get("time_boxed") else ""
        lines.append(f"pytest -m gpu (-k '{p.get('deselected')}'): {counts}{cut}")
        lines += [f"  - {x}" for x in p.get("problems", [])[:10]]
    return [f"- {ln}" if not ln.startswith("  ") else ln for ln in lines]


def ladder_section(ladder: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            r.get("status"),
            num(r.get("train_images_per_s")),
            num(r.get("train_speedup"), ".2f"),
            num(r.get("first_6_steps_s"), ".1f"),
            num(r.get("eval_images_per_s")),
            r.get("error") or r.get("eval_note", ""),
        ]
        for name, r in (ladder.get("rungs") or {}).items()
    ]
    head = ["rung", "status", "train img/s", "x fp32 NCHW", "first 6 steps s", "eval img/s"]
    lines = [
        f"{ladder.get('model')} {ladder.get('model_kwargs') or ''}, batch {ladder.get('batch')}; "
        f"{ladder.get('data', 'data: -')}; fastest: **{ladder.get('fastest', 'none')}**",
        "",
        markdown_table([*head, "note"], rows),
    ]
    return lines


def memory_section(memory: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            r.get("status"),
            num(r.get("peak_memory_gib"), ".2f"),
            num(1000 * r["step_seconds"], ".1f") if "step_seconds" in r else "-",
            num(r.get("train_images_per_s")),
            r.get("error") or r.get("peak_memory_kind", ""),
        ]
        for name, r in (memory.get("cases") or {}).items()
    ]
    head = ["case", "status", "peak GiB", "ms/step", "img/s", "measured / note"]
    model = f"{memory.get('model')} {memory.get('model_kwargs') or ''}, batch {memory.get('batch')}"
    return [model, "", markdown_table(head, rows)]


def training_section(t: dict[str, Any]) -> list[str]:
    lines = [
        f"path: **{t.get('path', '-')}** (`{' '.join(t.get('train_flags', []))}`), "
        f"{t.get('max_steps', '-')} iterations per net; projections are training steps only",
    ]
    head = [
        "model",
        "status",
        "iterations",
        "img/s",
        "steady",
        "test err %",
        "200 ep h",
        "64k it h",
    ]
    for key in ("parallel", "sequential"):
        m = t.get(key)
        if not m:
            continue
        rows = [
            [
                model,
                r.get("status"),
                r.get("iterations", "-"),
                num(r.get("images_per_s")),
                r.get("steady", "-"),
                num(r.get("test_error"), ".2f"),
                num(r.get("hours_200_epochs"), ".2f"),
                num(r.get("hours_64k_iterations"), ".2f"),
            ]
            for model, r in (m.get("runs") or {}).items()
        ]
        k = m.get("parallel")
        steady = (
            f"steady img/s summed over the {k} runs side by side "
            f"{num(m.get('sum_of_steady_images_per_s'))}"
            if k != 1
            else "steady img/s of one run alone, mean over the nets "
            f"{num(m.get('mean_of_steady_images_per_s'))}"
        )
        lines += [
            "",
            f"`--parallel {k}`: wall {num(m.get('wall_seconds'), '.1f')} s, "
            f"exit {m.get('exit')}; {steady}",
            "",
            markdown_table(head, rows),
        ]
    if t.get("parallel_gain"):
        lines += [
            "",
            f"--parallel gain (summed side by side / one alone): {t['parallel_gain']:.2f}x",
        ]
    return lines


def bench_section(bench: dict[str, Any]) -> list[str]:
    rows = [
        [
            f["name"],
            num(f.get("images_per_s")),
            num(f.get("mean_s"), ".4f"),
            num(f.get("peak_memory_gib"), ".2f"),
            num(f.get("speedup_over_classic"), ".2f"),
        ]
        for f in bench.get("figures") or []
    ]
    cut = " (cut by its time box)" if bench.get("time_boxed") else ""
    head = ["benchmark", "img/s", "mean s/round", "peak GiB", "x classic"]
    return [f"{len(rows)} benchmarks{cut}", "", markdown_table(head, rows)]


SECTIONS = {
    "env": env_section,
    "ladder": ladder_section,
    "memory": memory_section,
    "training": training_section,
    "bench": bench_section,
}


def render(out: Path) -> str:
    env = read_stage(out, "env")
    check = env.get("check") or {}
    rehearsal = check.get("rehearsal")
    title = (
        "GPU check REHEARSAL on the CPU (plumbing, not GPU figures)" if rehearsal else "GPU check"
    )
    lines = [
        f"# {title}: {device_title(env)}",
        "",
        f"Started {check.get('started_utc', '-')} UTC, git "
        f"{(env.get('repro_env') or {}).get('git_commit') or '-'}, data "
        f"{check.get('data_root') or '(project default)'}; `scripts/gpu-check.sh"
        f"{' --rehearse' if rehearsal else ''}`, budgets "
        + ", ".join(f"{k} {v:g} s" for k, v in (check.get("budgets_s") or {}).items())
        + ".",
        "",
        "## Stages",
        "",
        stage_table(out),
    ]
    for i, stage in enumerate(STAGES, 1):
        record = read_stage(out, stage)
        lines += ["", f"## {i} {TITLES[stage]}", ""]
        has_figures = set(record) - {"stage", "check"}
        lines += SECTIONS[stage](record) if has_figures else ["no figures (see the stage table)"]
    return "\n".join(lines) + "\n"


def write_summary(out: Path) -> None:
    text = render(out)
    atomic_write(out / SUMMARY, lambda p: p.write_text(text))
