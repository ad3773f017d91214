"""Wall time of `snakemake -n` (parse, validate, build the DAG) for an experiment of S setups × E learning rates.

    python benchmarks/bench_dag.py [--setups 20] [--etas 50] [--repeats 3]

Writes the config to a temporary directory (nothing runs) and prints the job count and the times.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def config(setups: int, etas: int) -> dict:
    setup = {
        "dataset": {"name": "digits", "n_train": 200},
        "model": {"arch": "fcn", "width": 50, "depth": 2, "activation": "tanh"},
        "loss": "mse",
        "loss_threshold": 0.001,
    }
    return {
        "experiment": "bench-dag",
        "setups": {f"s{i}": {**setup, "model": {**setup["model"], "width": 10 + i}} for i in range(setups)},
        "eta": {"relative": [round(0.1 * (k + 1), 6) for k in range(etas)]},
    }


def dry_run(workdir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run([SNAKEMAKE, "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1"],
                         capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    jobs = int(re.search(r"^total\s+(\d+)", out.stdout + out.stderr, flags=re.M)[1])
    return seconds, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", type=int, default=20)
    parser.add_argument("--etas", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "config").mkdir()
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config(args.setups, args.etas)))
        runs = [dry_run(workdir) for _ in range(args.repeats)]
    times = [s for s, _ in runs]
    print(f"{args.setups} setups x {args.etas} eta: {runs[0][1]} jobs; snakemake -n took "
          f"min {min(times):.1f} s, median {statistics.median(times):.1f} s over {args.repeats} runs")


if __name__ == "__main__":
    main()
