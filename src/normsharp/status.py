"""``normsharp status [RESULTS_DIR]``: which runs of an experiment are done, running, interrupted, failed or waiting.

Read from the files alone (standard library only, so it starts at once and works on a cluster's shared file
system while SLURM runs the jobs): the experiment's ``plan.json`` (every setup, seed and run the workflow was
started for, written when it starts), the refinement rounds' ``refine/round<k>.json``, and per run directory:

- **done**: ``result.json``, ``geometry.json`` and ``test.json`` are there (the run's status, steps and loss from
  result.json);
- **running**: its job's ``progress.json`` (:mod:`normsharp.progress`) was rewritten less than
  :func:`normsharp.progress.stale_after` (3 × ``progress_seconds`` + 5 s) ago: step, loss against ε, last S, steps
  per second and the time since its last update;
- **interrupted**: a ``progress.json`` older than that (the process was killed, ran out of time or lost its node,
  and cannot update it any more), one that says ``interrupted`` (Ctrl-C), or a ``checkpoint.pt`` without one; a
  rerun resumes it from its checkpoint;
- **failed**: a ``progress.json`` that says ``failed`` (the job raised; the error is in it), or else the job's log
  ``logs/RULE/…`` holding an ``ERROR`` record (the log is rewritten when a job starts, so it is the last
  attempt's);
- **waiting**: none of these yet (not started, or trained and its evaluation not started).

A run is the training job (``gf`` or a GD run) and then its ``evaluate`` job; the ``stage`` column says which.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from .progress import NAME as PROGRESS
from .progress import stale_after

PLAN = "plan.json"
RUN_NAME = re.compile(r"^(gf|[ra][0-9.e+-]+)$")
ERROR_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ ERROR ", re.MULTILINE)
STATES = ("done", "running", "interrupted", "failed", "waiting")


def write_plan(path, setups: dict) -> None:
    """``path`` (an experiment's plan.json, written atomically): ``setups`` maps each setup to its ``seeds``, its
    configured ``runs`` (``gf`` first), its ``refine_rounds`` and its ε (``loss_threshold``); stamped with the
    time it was written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"written": time.time(), "setups": setups}, indent=1))
    os.replace(tmp, path)


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or being replaced right now
        return None


def _run_key(run: str) -> tuple:
    """gf first, then the multiples of η_c, then the absolute η, each by value."""
    if run == "gf":
        return (0, 0.0)
    try:
        return (1 if run[0] == "r" else 2, float(run[1:]))
    except ValueError:
        return (3, math.inf)


def _log_error(path: Path) -> str | None:
    """The last line of the error recorded in a job's log (its tail), or None if it records none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = list(ERROR_LINE.finditer(tail))
    if not found:
        return None
    lines = [line.strip() for line in tail[found[-1].start():].splitlines() if line.strip()]
    return lines[-1][:300] if lines else "ERROR"


def experiment_dirs(root: Path) -> list[Path]:
    """``root`` itself if it is an experiment's folder (a plan.json or SETUP/seedN folders), else those below it."""
    def is_experiment(d: Path) -> bool:
        return (d / PLAN).is_file() or any(d.glob("*/seed[0-9]*"))

    if is_experiment(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and is_experiment(d)) if root.is_dir() else []


def planned_runs(exp: Path) -> tuple[dict | None, dict]:
    """(plan.json or None, {(setup, seed): [run, …]}): the plan's runs, the runs refinement rounds added, and any
    run directory on disk, each once, in the order of :func:`_run_key`."""
    plan = _json(exp / PLAN)
    runs: dict[tuple[str, int], list[str]] = {}
    for setup, spec in ((plan or {}).get("setups") or {}).items():
        for seed in spec.get("seeds", []):
            runs[(setup, int(seed))] = list(spec.get("runs", []))
    for seed_dir in exp.glob("*/seed[0-9]*"):
        if not seed_dir.name[4:].isdigit():
            continue
        found = runs.setdefault((seed_dir.parent.name, int(seed_dir.name[4:])), [])
        for entry in os.scandir(seed_dir):
            if entry.is_dir() and RUN_NAME.match(entry.name):
                found.append(entry.name)
        for round_file in sorted((seed_dir / "refine").glob("round*.json")):
            found += (_json(round_file) or {}).get("runs", [])
    order = list((plan or {}).get("setups") or {})
    return plan, {key: sorted(set(names), key=_run_key) for key, names in sorted(
        runs.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0]))}


def _log_path(exp: Path, stage: str, setup: str, seed: int, run: str) -> Path:
    if stage == "gf":
        return exp / "logs/gradient_flow" / setup / f"seed{seed}.log"
    rule = "evaluate" if stage == "evaluate" else "train_gd"
    return exp / "logs" / rule / setup / f"seed{seed}" / f"{run}.log"


def run_status(exp: Path, setup: str, seed: int, run: str, now: float, loss_threshold: float | None = None) -> dict:
    """The state of one run (module docstring) and what its files tell about it (ε from the plan, else from its
    progress.json)."""
    d = exp / setup / f"seed{seed}" / run
    try:
        names = set(os.listdir(d))
    except OSError:
        names = set()
    row = {"setup": setup, "seed": seed, "run": run, "state": "waiting",
           "stage": "gf" if run == "gf" else "gd", "loss_threshold": loss_threshold}
    if run[0] == "r":
        row["eta_over_eta_c"] = float(run[1:])
    elif run[0] == "a":
        row["eta"] = float(run[1:])
    trained = "result.json" in names
    if trained:
        result = _json(d / "result.json") or {}
        row.update({k: result.get(k) for k in ("status", "steps", "train_loss", "eta", "eta_c")})
        if result.get("eta") and result.get("eta_c"):
            row["eta_over_eta_c"] = result["eta"] / result["eta_c"]
        row["stage"] = "evaluate"
        if {"geometry.json", "test.json"} <= names:
            row["state"] = "done"
            return row
    progress = _json(d / PROGRESS) if PROGRESS in names else None
    if progress is not None and (not trained or progress.get("stage") == "evaluate"):
        row["stage"] = progress.get("stage", row["stage"])
        age = now - float(progress.get("updated") or 0)
        row.update(updated_seconds_ago=age, host=progress.get("host"))
        for key in ("step", "max_steps", "loss", "loss_threshold", "sharpness", "steps_per_second", "eta",
                    "eta_c", "wall_seconds"):
            if progress.get(key) is not None:
                row[key] = progress[key]
        if row.get("eta") and row.get("eta_c"):
            row["eta_over_eta_c"] = row["eta"] / row["eta_c"]
        state = progress.get("state", "running")
        if state == "running" and age > stale_after(progress.get("every_seconds") or 10):
            state = "interrupted"
            again = "starts it again" if progress.get("stage") == "evaluate" else "resumes it"  # no checkpoint
            row["note"] = f"no update for {_age(age)}: killed or out of time; a rerun {again}"
        if state in ("failed", "interrupted") and progress.get("error"):
            row["note"] = progress["error"]
        row["state"] = state
        return row
    error = _log_error(_log_path(exp, row["stage"], setup, seed, run))
    if error is not None:
        row.update(state="failed", note=error)
    elif "checkpoint.pt" in names:
        row.update(state="interrupted", note="checkpoint.pt, no progress.json: a rerun resumes it")
    elif trained:
        row["note"] = "trained; evaluate waiting"
    return row


def setup_notes(exp: Path, keys) -> list[str]:
    """A line for each failed prepare_data or init_model job (its runs wait for it)."""
    notes = []
    for setup in dict.fromkeys(s for s, _ in keys):
        if not (exp / setup / "data.pt").exists():
            error = _log_error(exp / "logs/prepare_data" / f"{setup}.log")
            if error:
                notes.append(f"{setup}: prepare_data failed: {error}")
    for setup, seed in keys:
        if not (exp / setup / f"seed{seed}" / "init.pt").exists():
            error = _log_error(exp / "logs/init_model" / setup / f"seed{seed}.log")
            if error:
                notes.append(f"{setup} seed {seed}: init_model failed: {error}")
    return notes


def experiment_status(exp: Path, now: float | None = None) -> dict:
    """{experiment, plan_written, runs: [row, …], counts, notes} of one experiment folder."""
    now = time.time() if now is None else now
    plan, runs = planned_runs(exp)
    eps = {name: spec.get("loss_threshold") for name, spec in ((plan or {}).get("setups") or {}).items()}
    rows = [run_status(exp, setup, seed, run, now, eps.get(setup)) for (setup, seed), names in runs.items()
            for run in names]
    counts = {state: sum(r["state"] == state for r in rows) for state in STATES}
    return {"experiment": str(exp), "plan_written": (plan or {}).get("written"), "runs": rows, "counts": counts,
            "notes": setup_notes(exp, list(runs))}


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _num(value, spec: str = ".4g") -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def format_table(status: dict) -> str:
    """The text ``normsharp status`` prints for one experiment."""
    counts = ", ".join(f"{n} {state}" for state, n in status["counts"].items() if n)
    written = status["plan_written"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(written)) if written else "no plan.json"
    lines = [f"{status['experiment']}: {len(status['runs'])} runs: {counts or 'none'}  (plan: {when})"]
    header = ["setup", "seed", "run", "η/η_c", "state", "stage", "step", "loss", "ε", "S", "steps/s", "updated",
              "note"]
    table = [header]
    for r in status["runs"]:
        live = "step" in r  # what its job reported last; else what result.json says (a trained run)
        step = _num(r["step"] if live else r.get("steps"), "d")
        if step and live and r.get("max_steps"):
            step += f"/{r['max_steps']}"
        loss = r.get("loss") if live else r.get("train_loss")
        note = r.get("note") or (r.get("status") if r["state"] == "done" else "")
        ago = r.get("updated_seconds_ago")
        stage = r["stage"] if r["state"] in ("running", "interrupted", "failed") else ""
        table.append([r["setup"], str(r["seed"]), r["run"], _num(r.get("eta_over_eta_c")), r["state"], stage, step,
                      _num(loss), _num(r.get("loss_threshold")), _num(r.get("sharpness")),
                      _num(r.get("steps_per_second"), ".3g"),
                      "" if ago is None else f"{_age(ago)} ago", note or ""])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines += [f"note: {n}" for n in status["notes"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="normsharp status", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default="results",
                        help="the results folder (results_dir of the config) or one experiment's folder in it "
                             "(default: results)")
    parser.add_argument("--json", action="store_true", help="print the states as JSON (one object per experiment)")
    args = parser.parse_args(argv)
    root = Path(args.results_dir)
    experiments = experiment_dirs(root)
    if not experiments:
        print(f"normsharp status: no experiment in {root} (no plan.json, no SETUP/seedN folders); give the "
              f"results_dir of the config or an experiment's folder", file=sys.stderr)
        return 2
    found = [experiment_status(exp) for exp in experiments]
    print(json.dumps(found, indent=1) if args.json else "\n\n".join(map(format_table, found)))
    return 0


def cli(argv=None) -> int:
    """The ``normsharp`` console script: ``normsharp status [RESULTS_DIR] [--json]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "status":
        return main(argv[1:])
    asked = argv[:1] in (["-h"], ["--help"])
    print("usage: normsharp status [RESULTS_DIR] [--json]   (normsharp status --help)",
          file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


if __name__ == "__main__":
    sys.exit(main())
