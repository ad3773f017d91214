"""Peak memory and wall time of every rule's job, for sizing the SLURM profile's requests.

    python benchmarks/rule_resources.py                                   # the quickstart (config/config.yaml)
    python benchmarks/rule_resources.py --mnist5k                         # 784-200-200-10 FCN, n = 5000, fake MNIST

Runs the workflow locally (one core) in a temporary directory with peak_rss/sitecustomize.py on PYTHONPATH, so
that every Python process records its kernel peak RSS (ru_maxrss, load-independent) and wall time. Prints, per
rule, the largest peak RSS of its script process, and the controller's (snakemake's) own peak. --mnist5k writes
fake MNIST of the real shape (tests/fake_image_data.py; 5000 training, 10000 test images) and caps the GF and
GD steps (--gf-steps, --gd-steps): memory peaks within the first steps; the time per step is what scales.
"""

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def config_for(args) -> dict:
    if not args.mnist5k:
        return yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = yaml.safe_load((REPO / "config" / "experiments" / "mnist5k-fcn-mse.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    for setup in cfg["setups"].values():
        setup["seeds"] = [0]
    cfg["eta"] = {"relative": [0.5, 2.0]}
    cfg["gf"] = {"max_steps": args.gf_steps}
    cfg["gd"] = {"max_steps": args.gd_steps}
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist5k", action="store_true")
    parser.add_argument("--gf-steps", type=int, default=20)
    parser.add_argument("--gd-steps", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rule_resources_"))
    cfg = config_for(args)
    if args.mnist5k:
        from fake_image_data import write_fake_mnist

        write_fake_mnist(work / "data", n_train=5000, n_test=10000)
        cfg["data_dir"] = str(work / "data")
    (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    log = work / "peak_rss.jsonl"
    env = {**os.environ, "NORMSHARP_PEAK_RSS_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "peak_rss"), str(REPO / "src")])}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "1"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    rows = defaultdict(list)
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        script = next((re.search(r"\.([a-z_]+)\.py$", a) for a in rec["argv"] if a.endswith(".py")), None)
        name = script.group(1) if script and ".snakemake" in rec["argv"][0] else "snakemake (controller)"
        rows[name].append(rec)
    print(f"workdir {work}" if args.keep else "", file=sys.stderr)
    print("| rule | jobs | peak RSS, MB (max) | wall s (max) |")
    print("|---|---|---|---|")
    for name, recs in rows.items():
        print(f"| {name} | {len(recs)} | {max(r['peak_rss_mb'] for r in recs):.0f} | "
              f"{max(r['wall_s'] for r in recs):.1f} |")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
