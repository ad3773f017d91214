"""The quickstart end to end: wall time, the floor set by in-job compute, and where the rest goes.

    python benchmarks/bench_pipeline.py

Runs ``snakemake --cores 2`` (the README's quickstart, ``config/config.yaml``) into a fresh results folder
(benchmarks/out/pipeline/results, via ``--config results_dir=...``) and measures, per job:
- start: from snakemake's "[timestamp] rule X" line (1 s resolution) to the job log's first line, which
  ``normsharp.files.log_to`` writes once the script's imports are done (ms resolution): process start,
  Snakemake's script preamble and imports;
- compute: from that line to the job's last output file's modification time;
- finish: from there to snakemake's "Finished jobid" line.
The floor is a lower bound on any 2-core schedule of the same in-job compute: max(longest DAG path,
total / 2), with the DAG prepare → init → gradient flow → each GD run → its evaluation → aggregate →
figures. Import cost of each workflow script: ``python -c "<its import lines>"``, median of 3, beside
``python -c pass``. The science of the run is checked as the issue states it: S·η/2 within [0.97, 1.08] from
1.25 η_c on, flow-aligned final S within 3 % of the gradient flow's, and the observed transition within 2 %
of the one measured before (1.11 η_c, README). Writes the section ``bench_pipeline`` of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "pipeline"
sys.path.insert(0, str(Path(__file__).parent))
from results_md import write_section  # noqa: E402

# What each rule's stage function imports when it runs (normsharp.stages imports them inside the functions).
STAGE_IMPORTS = {
    "prepare_data": "torch, sklearn.datasets, normsharp.data",
    "init_model": "torch, normsharp.data, normsharp.models",
    "gradient_flow": "torch, pyarrow.parquet, normsharp.flow, normsharp.models, normsharp.numerics, "
                     "normsharp.objective, normsharp.checkpoint",
    "train_gd": "torch, pyarrow.parquet, normsharp.dynamics, normsharp.models, normsharp.numerics, "
                "normsharp.objective, normsharp.checkpoint",
    "evaluate": "torch, normsharp.dynamics, normsharp.eigen, normsharp.metrics, normsharp.theory, normsharp.models, "
                "normsharp.numerics, normsharp.objective",
    "aggregate": "pandas, pyarrow.parquet, normsharp.analysis",
    "figures": "",
}
TRANSITION_BEFORE = 1.11  # η_transition / η_c of the quickstart before this benchmark existed (README)
TORCH = "(python -c 'import torch')"  # import_cost's key for a bare torch import
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", re.M)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"


def parse_log(text: str) -> dict[int, dict]:
    """jobid → {rule, start, end (epoch s), outputs} from snakemake's log."""
    jobs: dict[int, dict] = {}
    stamp, current = None, None
    for line in text.splitlines():
        m = STAMP.match(line.strip())
        if m:
            stamp = time.mktime(time.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"))
            continue
        rule = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if rule:
            current = {"rule": rule.group(1), "start": stamp, "outputs": []}
            continue
        if current is not None and line.strip().startswith("output:"):
            current["outputs"] = [p.strip() for p in line.split(":", 1)[1].split(",")]
        jid = re.match(r"^\s+jobid: (\d+)$", line)
        if jid and current is not None:
            jobs[int(jid.group(1))] = current
            current = None
        done = re.match(r"^Finished jobid: (\d+)", line.strip())
        if done and int(done.group(1)) in jobs:
            jobs[int(done.group(1))]["end"] = stamp
    return jobs


def first_log_time(path: Path) -> float | None:
    if not path.exists():
        return None
    first = path.read_text().splitlines()[:1]
    if not first:
        return None
    stamp = first[0][:23]  # "2026-12-02 02:19:16,617"
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def import_cost() -> dict[str, tuple[float, float]]:
    """Per script: seconds to run its import lines, and those plus what its stage imports (STAGE_IMPORTS), in a
    fresh interpreter (median of 3)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def timed(code: str) -> float:
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    bare = timed("pass")
    costs_torch = timed("import torch")
    # what Snakemake's preamble makes every script job import (unpickling its `snakemake` object)
    preamble = timed("import pickle, snakemake.script\nfrom snakemake.logging import logger")
    costs = {"(python -c pass)": (bare, bare), TORCH: (costs_torch, costs_torch),
             "(snakemake preamble)": (preamble, preamble)}
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        if script.stem not in STAGE_IMPORTS:
            continue
        lines = "\n".join(ln for ln in script.read_text().splitlines() if ln.startswith(("import ", "from ")))
        more = f"\nimport {STAGE_IMPORTS[script.stem]}" if STAGE_IMPORTS[script.stem] else ""
        costs[script.stem] = (timed(lines), timed(lines + more))
    return costs


def main() -> None:
    results = OUT / "results"
    if "--reuse" in sys.argv:  # analyse the last run again (wall from its log: Date line to the last timestamp)
        text = (OUT / "snakemake.log").read_text()
        load_before = load_after = ["?"] * 3
        began = re.search(r"Date: (\S+ \S+)", text).group(1)
        stamps = [time.mktime(time.strptime(m, "%a %b %d %H:%M:%S %Y")) for m in STAMP.findall(text)]
        wall = max(stamps) - time.mktime(time.strptime(began, "%Y-%m-%d %H:%M:%S"))
    else:
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        load_before = load()
        start = time.perf_counter()
        proc = subprocess.run(["snakemake", "--cores", "2", "--config", f"results_dir={results}"], cwd=ROOT,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        load_after = load()
        text = proc.stdout + proc.stderr
        (OUT / "snakemake.log").write_text(text)
        if proc.returncode != 0:
            sys.exit(f"snakemake failed (exit {proc.returncode}); see {OUT / 'snakemake.log'}")

    jobs = parse_log(text)
    logs = {p: first_log_time(p) for p in (results / "quickstart" / "logs").rglob("*.log")}
    runs = pd.read_parquet(results / "quickstart" / "runs.parquet")
    per_rule = defaultdict(lambda: defaultdict(float))
    compute_by_job = {}
    for job in jobs.values():
        if job["rule"] == "all":
            continue
        outs = [Path(o) if Path(o).is_absolute() else ROOT / o for o in job["outputs"]]
        end_out = max(o.stat().st_mtime for o in outs if o.exists())
        key = outs[0].relative_to(results / "quickstart")
        parts = key.parts  # setup/data.pt, setup/seedN/init.pt, setup/seedN/run/file, runs.parquet, figures/x
        if job["rule"] in ("aggregate", "figures"):
            logf = results / "quickstart" / "logs" / f"{job['rule']}.log"
        elif job["rule"] == "prepare_data":
            logf = results / "quickstart" / "logs" / "prepare_data" / f"{parts[0]}.log"
        elif job["rule"] in ("init_model", "gradient_flow"):
            logf = results / "quickstart" / "logs" / job["rule"] / parts[0] / f"{parts[1]}.log"
        elif job["rule"] == "train_gd":
            logf = results / "quickstart" / "logs" / "train_gd" / parts[0] / parts[1] / f"{parts[2]}.log"
        else:
            logf = results / "quickstart" / "logs" / job["rule"] / parts[0] / parts[1] / f"{parts[2]}.log"
        began = logs.get(logf)
        if began is None:
            sys.exit(f"no start line in {logf}")
        d = per_rule[job["rule"]]
        d["jobs"] += 1
        d["duration"] += job["end"] - job["start"]
        d["start"] += began - job["start"]
        d["compute"] += end_out - began
        d["finish"] += job["end"] - end_out
        run = parts[2] if job["rule"] in ("gradient_flow", "train_gd", "evaluate") else ""
        compute_by_job[(job["rule"], run)] = end_out - began

    # the floor from in-job compute: GF and GD their loop's wall_seconds; the other jobs log line to last output,
    # less what their stage imports after the log line
    imports = import_cost()

    def stage_imports(rule: str) -> float:
        """Seconds a job of ``rule`` spends importing what its stage uses, after its first log line."""
        script_only, with_stage = imports.get(rule, (0.0, 0.0))
        return with_stage - script_only

    for rule, run in list(compute_by_job):
        if rule in ("gradient_flow", "train_gd"):
            continue
        compute_by_job[(rule, run)] = max(0.0, compute_by_job[(rule, run)] - stage_imports(rule))
    gf_loop = float(runs[runs.method == "gf"].wall_seconds.iloc[0])
    gd_loops = {f"r{r!r}": w for r, w in zip(runs[runs.method == "gd"].eta_over_eta_c.round(6),
                                              runs[runs.method == "gd"].wall_seconds)}

    def c(rule, run=""):
        if rule == "gradient_flow":
            return gf_loop
        if rule == "train_gd":
            return gd_loops.get(run, compute_by_job.get((rule, run), 0.0))
        return compute_by_job.get((rule, run), 0.0)

    gd = runs[runs.method == "gd"]
    gd_runs = [r for (rule, r) in compute_by_job if rule == "train_gd"]
    head = c("prepare_data") + c("init_model") + c("gradient_flow", "gf")
    branch = max(c("train_gd", r) + c("evaluate", r) for r in gd_runs)
    longest = head + branch + c("aggregate") + c("figures")
    total = sum(c(rule, run) for rule, run in compute_by_job)
    floor = max(longest, total / 2)
    # what no schedule of one process per job avoids and the floor leaves out: each script job starts python,
    # unpickles Snakemake's preamble and imports what its stage uses (torch for all but aggregate and figures)
    starts = sum(d["jobs"] * (imports["(snakemake preamble)"][0] + stage_imports(rule))
                 for rule, d in per_rule.items()) / 2
    loops = f"GF {float(runs[runs.method == 'gf'].wall_seconds.iloc[0]):.1f} s, GD {float(gd.wall_seconds.sum()):.1f} s"
    first_start = min(j["start"] for j in jobs.values())
    last_end = max(j["end"] for j in jobs.values() if "end" in j)

    # the science
    gf_row = runs[runs.method == "gf"].iloc[0]
    conv = gd[gd.status == "converged"]
    eos = conv[conv.eta_over_eta_c >= 1.25 - 1e-9]
    ratio = eos.sharpness.abs() * eos.eta / 2
    flow = conv[conv.eta_over_eta_c < 1]
    dev = (flow.sharpness.abs() / abs(gf_row.sharpness) - 1).abs()
    transition = float(gd.eta_transition.iloc[0] / gd.eta_c.iloc[0])
    science = [
        ("S·η/2 from 1.25 η_c", f"{ratio.min():.3f}–{ratio.max():.3f}", "[0.97, 1.08]",
         bool(ratio.between(0.97, 1.08).all()) and len(eos) > 0),
        ("flow-aligned S vs the gradient flow's", f"≤ {100 * dev.max():.2f} %", "≤ 3 %", bool((dev <= 0.03).all())),
        ("observed transition η/η_c", f"{transition:.3f} (before {TRANSITION_BEFORE})", "within 2 %",
         abs(transition / TRANSITION_BEFORE - 1) <= 0.02),
        ("s_GF, η_c; GF gradients + HVPs", f"{gf_row.s_gf:.6f}, {gf_row.eta_c:.6f}; {int(gf_row.n_grad):,} + "
         f"{int(gf_row.n_hvp):,} (incl. geometry)", "—", None),
    ]
    jobs_total = sum(d["jobs"] for d in per_rule.values())

    def yes(ok):
        return "—" if ok is None else ("yes" if ok else "**no**")

    head_ = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    lines = [
        "## Quickstart pipeline", "",
        f"`python benchmarks/bench_pipeline.py` ({datetime.datetime.now().isoformat(timespec='seconds')}, git "
        f"{head_.stdout.strip()}, {os.cpu_count()} CPUs, load average before {' '.join(load_before)}, after "
        f"{' '.join(load_after)}: wall times on a loaded machine are inflated).", "",
        "| quantity | measured | target | met |", "|---|---|---|---|",
        f"| wall, `snakemake --cores 2` ({int(jobs_total) + 1} jobs) | {wall:.1f} s | ≤ 110 s (stretch 90 s) | "
        f"{yes(wall <= 110)} |",
        f"| floor: max(longest path {longest:.1f} s, in-job compute {total:.1f} s / 2) | {floor:.1f} s | — | — |",
        f"| of which GF and GD loops (wall_seconds in runs.parquet) | {loops} | — | — |",
        f"| wall ÷ floor | {wall / floor:.2f} | ≤ 1.6 | {yes(wall / floor <= 1.6)} |",
        f"| process starts the floor leaves out: Σ over jobs of preamble + the stage's imports, / 2 cores "
        f"(`import torch` alone: {imports[TORCH][0]:.2f} s) | {starts:.1f} s | — | — |",
        f"| wall ÷ (floor + process starts) | {wall / (floor + starts):.2f} | — | — |",
        f"| snakemake before the first job and after the last | {wall - (last_end - first_start):.1f} s | — | — |",
        *(f"| {q} | {m} | {t} | {yes(ok)} |" for q, m, t, ok in science), "",
        "Per rule (seconds summed over its jobs; start = process start + imports, before the job's first log line; "
        "snakemake's timestamps have 1 s resolution, hence small negative finish times):",
        "", "| rule | jobs | job time (snakemake) | start | compute | finish | start per job |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule, d in per_rule.items():
        lines.append(f"| {rule} | {int(d['jobs'])} | {d['duration']:.0f} | {d['start']:.1f} | {d['compute']:.1f} | "
                     f"{d['finish']:.1f} | {d['start'] / d['jobs']:.2f} |")
    lines += ["", "Import cost in a fresh interpreter (median of 3): the script's own import lines, and those plus "
              "what its stage imports when it runs (the whole start of a job's process is python + preamble + the "
              "latter):", "",
              "| script | script imports (s) | with the stage's imports (s) |", "|---|---|---|",
              *(f"| {k} | {a:.2f} | {b:.2f} |" for k, (a, b) in imports.items())]
    text = "\n".join(lines)
    print(text)
    write_section("bench_pipeline", text)


if __name__ == "__main__":
    main()
