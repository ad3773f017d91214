"""Gradient-flow integrators: accuracy against a converged reference and gradient + HVP work.

    python benchmarks/bench_gf.py

Quickstart model (digits n = 200, FCN tanh width 50, MSE, ε = 1e-3) and a larger one (n = 1000, width 100,
ε = 0.02), float64, one thread, from the same θ₀ (seed 0). Rows: RK4 at step α/S (S every 5 steps; α = 1 is the
old default), RKC2 (``gf.method: rkc``) at several ``tol``. The reference is a much finer run: RK4 α = 0.25 with
S every 2 steps on the quickstart model; RKC tol 1e-10 on the larger one, checked against RK4 α = 0.5 (both
references are also compared with each other's method on the quickstart model). Errors are relative:
|s_GF − s_ref|/s_ref, ‖θ(t_ε) − θ_ref‖/‖θ_ref‖, |t_ε − t_ref|/t_ref. "work" = gradients + HVPs (an HVP costs
1.2–1.7 gradients, bench_core.py), and the ratio is RK4 α = 1's work over the row's.

Every run is saved to benchmarks/out/gf/ and reused by a later invocation (delete the folder to recompute).
The table goes to benchmarks/RESULTS.md (section ``bench_gf``).
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from normsharp.data import load_data  # noqa: E402
from normsharp.flow import run_gradient_flow  # noqa: E402
from normsharp.models import build_model  # noqa: E402
from normsharp.objective import NetObjective  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from results_md import write_section  # noqa: E402

OUT = Path(__file__).with_name("out") / "gf"
MODELS = {"quickstart": (200, 50, 1e-3), "larger": (1000, 100, 0.02)}
RUNS = {  # (method, parameter, S every k steps for rk4)
    "quickstart": [("rk4", 0.25, 2), ("rk4", 1.0, 5), ("rkc", 1e-10, 0), ("rkc", 1e-6, 0), ("rkc", 1e-7, 0),
                   ("rkc", 1e-8, 0)],
    "larger": [("rkc", 1e-10, 0), ("rk4", 0.5, 5), ("rk4", 1.0, 5), ("rkc", 1e-6, 0), ("rkc", 1e-7, 0),
               ("rkc", 1e-8, 0)],
}
REFERENCE = {"quickstart": ("rk4", 0.25, 2), "larger": ("rkc", 1e-10, 0)}
BASELINE = ("rk4", 1.0, 5)
NOTES = """Why RKC wins: the flow is stiff (S ≈ 10–20 against a decay time of hundreds), so an explicit method such as
RK4 or Dormand–Prince is held to steps h ≲ 3/S by stability, not accuracy, for the whole flow. A second-order
Runge–Kutta–Chebyshev step with s stages is stable for h·S ≤ 0.65(s² − 1): its cost per unit time grows as √S
instead of S, and the embedded error estimate sets h where the flow is slow. S, which RKC needs as the
spectral radius, is computed at every accepted step (warm-started Lanczos, about 4 HVPs each).

The maximum of S along the flow: S is known at every accepted step; wherever a sample exceeds both neighbours,
the parabola through the three is maximised and S is computed on the flow at its vertex (an RKC step from the
sample before it), up to three times while the parabola promises more than `sharpness_tol`. s_GF is always a
computed S at a point of the flow, never an extrapolation. tests/test_dynamics.py checks it on a flow whose
S(t) has a narrow peak between accepted steps (sampled maximum 1e-3 short of it; s_GF exact to 1e-5). On
these two models S rises to the end, so s_GF is S(θ(t_ε)): the last step is shortened to end where the cubic
Hermite interpolant of L (dL/dt = −‖∇L‖²) reaches ε, so t_ε is not overshot by a long step."""


def run(model: str, method: str, par: float, every: int) -> dict:
    """One gradient-flow run (cached in OUT): counts, t_ε, s_GF, final θ."""
    path = OUT / f"{model}_{method}_{par:g}_{every}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)  # plain numbers and a tensor
    n, width, eps = MODELS[model]
    data = load_data({"name": "digits", "n_train": n}, "mse")
    net = build_model({"arch": "fcn", "width": width, "depth": 2, "activation": "tanh"}, data.input_shape,
                      data.output_dim, seed=0)
    obj = NetObjective(net, data.x_train, data.y_train, "mse")
    kwargs = dict(alpha=par, sharpness_every=every) if method == "rk4" else dict(tol=par)
    start = time.perf_counter()
    res = run_gradient_flow(obj, net.theta0, loss_threshold=eps, max_steps=10**7, method=method,
                            progress_seconds=1e9, **kwargs)
    out = dict(status=res.status, steps=res.steps, t=res.time, s_gf=res.s_gf, n_grad=res.n_grad, n_hvp=res.n_hvp,
               wall=time.perf_counter() - start, theta=res.theta)
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    print(f"{model} {method} {par:g}: {res.status} steps={res.steps} s_gf={res.s_gf:.8g} "
          f"grad={res.n_grad} hvp={res.n_hvp} wall={out['wall']:.0f}s", flush=True)
    return out


def name(method: str, par: float, every: int) -> str:
    return f"RK4 α = {par:g}, S every {every}" if method == "rk4" else f"RKC tol = {par:g}"


def main() -> None:
    lines = []
    for model, (n, width, eps) in MODELS.items():
        results = {key: run(model, *key) for key in RUNS[model]}
        ref, base = results[REFERENCE[model]], results[BASELINE]
        base_work = base["n_grad"] + base["n_hvp"]
        lines += [f"**{model} model** (digits n = {n}, width {width}, ε = {eps:g}); reference: "
                  f"{name(*REFERENCE[model])} (s_GF = {ref['s_gf']:.9g}, t_ε = {ref['t']:.7g})", "",
                  "| integrator | steps | gradients + HVPs | work ÷ RK4 α = 1 | s_GF | error s_GF | error θ(t_ε) "
                  "| error t_ε | wall (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for key, r in results.items():
            work = r["n_grad"] + r["n_hvp"]
            errs = [abs(r["s_gf"] / ref["s_gf"] - 1), float((r["theta"] - ref["theta"]).norm() / ref["theta"].norm()),
                    abs(r["t"] / ref["t"] - 1)]
            errs_s = ["–"] * 3 if key == REFERENCE[model] else [f"{e:.1e}" for e in errs]
            lines.append(f"| {name(*key)} | {r['steps']:,} | {r['n_grad']:,} + {r['n_hvp']:,} | "
                         f"{work / base_work:.3f} (1/{base_work / work:.1f}) | {r['s_gf']:.7f} | "
                         + " | ".join(errs_s) + f" | {r['wall']:.0f} |")
        lines.append("")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    text = "\n".join([
        "## Gradient-flow integrators", "",
        f"`python benchmarks/bench_gf.py` ({datetime.date.today()}, git {head}; float64, 1 thread; counts are "
        "load-independent, wall times are not: they come from a shared machine).", "", *lines, NOTES])
    print(text)
    write_section("bench_gf", text)


if __name__ == "__main__":
    main()
