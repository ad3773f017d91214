"""Core cost benchmarks of normsharp on CPU, float64: HVP cost, sharpness accuracy per HVP, GD-step overhead.

    python benchmarks/bench_core.py

Models: the quickstart's digits FCN (n_train 200, width 50, depth 2, tanh, MSE; 6,310 parameters) and a larger
one (n_train 1000, width 100; 17,610 parameters). One thread (torch.set_num_threads(1)); every timing is a
median over interleaved rounds (the candidates run in rotating order inside each round, so a load change on a
shared machine hits them alike), and ratios are medians of per-round ratios.

1. HVP wall time relative to one gradient (``NetObjective.loss_and_grad``):
   (a) the library: ``H = obj.hessian_at(θ)`` once, then ``H(v)`` per product; per product, and amortised
       over a 20-product solve including the build of H;
   (b) double backward rebuilding the gradient graph for every product;
   (c) torch.func forward-over-reverse, ``jvp(grad(L), (θ,), (v,))``;
   (d) for information, torch.func ``linearize(grad(L), θ)`` (forward-over-reverse traced once per θ).
2. Sharpness accuracy per HVP. Reference S: ``lanczos(tol=1e-12, max_iter=300)``, checked against a dense
   Hessian (``torch.autograd.functional.hessian`` + ``eigvalsh``) on the small model and against a second start
   vector on both. "m to 1e-6" is the smallest max_iter for which ``lanczos(max_iter=m, tol=0)`` (same start)
   is within 1e-6 relative of S (an oracle count: the best any stopping rule could do); beside it what the
   library's own stopping rule (``tol`` = relative eigenvalue accuracy) costs at tol 1e-6/1e-4/1e-3, ARPACK
   ``eigsh`` (k=1, which='LM', the largest tol of 1e-1, 1e-2, ... whose eigenvalue is within 1e-6; its matvecs
   counted) and ``power_iteration`` (the first iteration whose Rayleigh quotient is within 1e-6). Warm start:
   along GD trajectories (``run_gd`` in segments of 50 steps) each point is solved from the previous point's
   eigenvector.
3. One GD step as ``run_gd`` takes it (``in_place_gradient`` + θ −= ηg + float(loss)), and ``run_gd`` itself,
   against a bare forward+backward of the equivalent plain ``nn.Sequential`` (float64, same data and weights).

The table is printed and written to benchmarks/RESULTS.md; text below the marker line ``<!-- notes -->`` in an
existing RESULTS.md is kept.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse.linalg as sla
import torch
from torch import nn

torch.set_num_threads(1)

from normsharp.data import load_data  # noqa: E402
from normsharp.dynamics import DIVERGED, run_gd  # noqa: E402
from normsharp.eigen import _start_vector, lanczos, power_iteration  # noqa: E402
from normsharp.flow import run_gradient_flow  # noqa: E402
from normsharp.models import build_model  # noqa: E402
from normsharp.objective import NetObjective  # noqa: E402

T0 = time.perf_counter()
ACC = 1e-6  # relative eigenvalue accuracy asked of every solver
SIZES = {"small": (200, 50), "large": (1000, 100)}
ROWS: list[tuple[str, str, str, str]] = []  # (quantity, measured, target, pass)
DETAILS: list[str] = []  # markdown blocks after the main table


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def row(quantity: str, measured: str, target: str = "", ok: bool | None = None) -> None:
    ROWS.append((quantity, measured, target or "—", "—" if ok is None else ("yes" if ok else "**no**")))


def setup(size: str):
    n_train, width = SIZES[size]
    data = load_data({"name": "digits", "n_train": n_train}, "mse")
    model = build_model({"arch": "fcn", "width": width, "depth": 2, "activation": "tanh"},
                        data.input_shape, data.output_dim, seed=0)
    obj = NetObjective(model, data.x_train, data.y_train, "mse")
    return data, model, obj


def label(size: str, obj: NetObjective) -> str:
    n_train, width = SIZES[size]
    return f"n={n_train}, w={width}, P={obj.dim:,}"


# ----------------------------------------------------------------------------------------------- timing


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, block_s: float = 0.02, warmup: int = 3,
                number: int | None = None) -> dict[str, list[float]]:
    """Per-call seconds of each callable in each of ``rounds`` rounds (rotating order inside a round).

    Each sample is a block of back-to-back calls, ``number`` of them, or as many as fill about ``block_s``
    (at least 3 for calls shorter than that, so that the first call after switching candidates, with cold
    caches, weighs little).
    """
    count = {}
    for name, fn in fns.items():
        times = []
        for _ in range(warmup + 3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        one = statistics.median(times[-3:])
        count[name] = number or (1 if one > block_s else max(3, round(block_s / one)))
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, k = fns[name], count[name]
            t = time.perf_counter()
            for _ in range(k):
                fn()
            out[name].append((time.perf_counter() - t) / k)
    return out


def med(xs) -> float:
    return statistics.median(xs)


def med_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------- 1. HVP cost


def bench_hvp(size: str) -> None:
    from torch.func import grad, jvp, linearize

    _, model, obj = setup(size)
    theta = model.theta0.clone()
    xc, yc = obj.chunks[0]
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(obj.dim, generator=gen, dtype=torch.float64)

    h_lib = obj.hessian_at(theta)

    def amortised20():
        h = obj.hessian_at(theta)
        for _ in range(20):
            h(v)

    def recompute(vec):
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(obj._chunk_loss(th, xc, yc), th, create_graph=True)
        return torch.autograd.grad(g, th, grad_outputs=vec)[0]

    def loss_fn(p):
        return obj._chunk_loss(p, xc, yc)

    def fwd_rev(vec):
        return jvp(grad(loss_fn), (theta,), (vec,))[1]

    # the four agree
    ref = h_lib(v)
    errs = {"recompute": recompute(v), "torch.func": fwd_rev(v)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        _, lin = linearize(grad(loss_fn), theta)
        lin_build = time.perf_counter() - t
        errs["linearize"] = lin(v)
    for name, hv in errs.items():
        rel = float((hv - ref).norm() / ref.norm())
        assert rel < 1e-10, f"{name} HVP differs from the library's by {rel:.2e}"

    def lanczos20():
        lanczos(h_lib, obj.dim, max_iter=20, tol=0.0)

    diag = torch.rand(obj.dim, generator=gen, dtype=torch.float64)

    def lanczos20_bare():  # the solver's own work: a diagonal matvec instead of the HVP
        lanczos(lambda q: q * diag, obj.dim, max_iter=20, tol=0.0)

    fns = {
        "grad": lambda: obj.loss_and_grad(theta),
        "build": lambda: obj.hessian_at(theta),
        "lib": lambda: h_lib(v),
        "lib_amortised20": amortised20,
        "recompute": lambda: recompute(v),
        "fwd_rev": lambda: fwd_rev(v),
        "linearized": lambda: lin(v),
        "lanczos20": lanczos20,
        "lanczos20_bare": lanczos20_bare,
    }
    t = interleaved(fns, 21 if size == "small" else 11)
    g = t["grad"]
    lab = label(size, obj)
    r_lib = med_ratio(t["lib"], g)
    r_am = med_ratio([x / 20 for x in t["lib_amortised20"]], g)
    row(f"[{lab}] gradient (loss_and_grad)", f"{med(g) * 1e3:.2f} ms")
    row(f"[{lab}] (a) HVP, library, per product ÷ gradient", f"{r_lib:.2f}×", "≤ 2.2×", r_lib <= 2.2)
    row(f"[{lab}] (a) HVP, library, amortised over 20 incl. hessian_at ÷ gradient", f"{r_am:.2f}×", "≤ 2.2×",
        r_am <= 2.2)
    row(f"[{lab}] (a) hessian_at(θ) build ÷ gradient", f"{med_ratio(t['build'], g):.2f}×")
    row(f"[{lab}] (b) HVP, double backward rebuilt per product ÷ gradient",
        f"{med_ratio(t['recompute'], g):.2f}×", "(comparison)")
    row(f"[{lab}] (c) HVP, torch.func jvp(grad) ÷ gradient", f"{med_ratio(t['fwd_rev'], g):.2f}×", "(comparison)")
    row(f"[{lab}] (d) HVP, torch.func linearize(grad) per product ÷ gradient (+ {lin_build:.2f} s trace per θ)",
        f"{med_ratio(t['linearized'], g):.2f}×", "(comparison)")
    row(f"[{lab}] Lanczos step (HVP + reorthogonalisation + Ritz), 20 steps, per step ÷ gradient",
        f"{med_ratio([x / 20 for x in t['lanczos20']], g):.2f}×")
    row(f"[{lab}]   of which Lanczos bookkeeping without the HVP (diagonal matvec), per step",
        f"{med(t['lanczos20_bare']) / 20 * 1e6:.0f} µs = {med_ratio([x / 20 for x in t['lanczos20_bare']], g):.2f}× "
        "gradient")
    log(f"1. HVP {size}: grad {med(g) * 1e3:.2f} ms, " + ", ".join(
        f"{k} {med(x) * 1e3:.2f} ms" for k, x in t.items() if k != "grad"))


# ------------------------------------------------------------------------------------- 2. accuracy per HVP


class Counted:
    """A matvec that counts its calls and records the Rayleigh quotient vᵀHv/vᵀv of every input."""

    def __init__(self, hvp):
        self.hvp, self.n, self.rq = hvp, 0, []

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.n += 1
        hv = self.hvp(v)
        self.rq.append(float(v @ hv) / float(v @ v))
        return hv


def rel_err(x: float, s: float) -> float:
    return abs(x - s) / abs(s)


def oracle_lanczos(hvp, dim: int, s: float, v0, cap: int = 300) -> int | None:
    """Smallest m with |lanczos(max_iter=m, tol=0, v0).value − S| ≤ ACC·|S| (exponential search + bisection;
    the top Ritz value is monotone in m by interlacing)."""
    ok = lambda m: rel_err(lanczos(hvp, dim, max_iter=m, tol=0.0, v0=v0).value, s) <= ACC  # noqa: E731
    lo, hi = 0, 1
    while not ok(hi):
        lo, hi = hi, 2 * hi
        if hi > cap:
            return None if not ok(cap) else _bisect(ok, lo, cap)
    return _bisect(ok, lo, hi)


def _bisect(ok, lo: int, hi: int) -> int:  # ok(hi), not ok(lo) (lo = 0 counts as failing)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def oracle_power(hvp, dim: int, s: float, v0, cap: int) -> int | None:
    """First iteration n at which power_iteration's eigenvalue (the Rayleigh quotient) is within ACC."""
    c = Counted(hvp)
    power_iteration(c, dim, tol=0.0, max_iter=cap, v0=v0)
    for n, q in enumerate(c.rq, 1):
        if rel_err(q, s) <= ACC:
            return n
    return None


def eigsh_count(hvp, dim: int, s: float, v0: torch.Tensor) -> tuple[int | None, float | None]:
    """(matvecs, tol) of ARPACK eigsh(k=1, which='LM') at the largest tol 10^-j whose eigenvalue is within ACC."""
    for j in range(1, 15):
        tol = 10.0 ** -j
        c = Counted(hvp)
        op = sla.LinearOperator((dim, dim), dtype=np.float64,
                                matvec=lambda x, c=c: c(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)
                                                                    .reshape(-1))).numpy())
        try:
            val = sla.eigsh(op, k=1, which="LM", tol=tol, v0=v0.numpy(), maxiter=10_000,
                            return_eigenvectors=False)[0]
        except sla.ArpackNoConvergence:
            continue
        if rel_err(float(val), s) <= ACC:
            return c.n, tol
    return None, None


class Recorder:
    """A matvec that keeps every input q_j and output Hq_j (the Krylov basis of a Lanczos run and its image)."""

    def __init__(self, hvp):
        self.hvp, self.q, self.w = hvp, [], []

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        w = self.hvp(v)
        self.q.append(v.clone())
        self.w.append(w.clone())
        return w


def krylov_trace(hvp, dim: int, v0, max_iter: int = 60) -> list[tuple[int, float]]:
    """Per step j of one library lanczos(tol=0) run: (j, top Ritz value θ₁), by Rayleigh–Ritz on the recorded
    orthonormal basis Q_j (T_j = Q_jᵀ H Q_j). Used to read off the oracle cost of other accuracies."""
    rec = Recorder(hvp)
    lanczos(rec, dim, tol=0.0, max_iter=max_iter, v0=v0)
    q, w = torch.stack(rec.q), torch.stack(rec.w)
    out = []
    for j in range(1, len(rec.q) + 1):
        t = q[:j] @ w[:j].T
        theta = torch.linalg.eigvalsh(0.5 * (t + t.T))
        out.append((j, float(theta[theta.abs().argmax()])))
    return out


def first_hit(trace, s: float, acc: float) -> int | None:
    """The first step of the trace whose Ritz value is within ``acc`` of S (relative)."""
    return next((j for j, t1 in trace if rel_err(t1, s) <= acc), None)


def fmt_n(n) -> str:
    return "—" if n is None else str(n)


def bench_cold(size: str) -> float:
    _, model, obj = setup(size)
    theta = model.theta0.clone()
    lab = label(size, obj)
    h = obj.hessian_at(theta)
    ref = lanczos(h, obj.dim, tol=1e-12, max_iter=300)
    s = ref.value
    assert ref.converged
    ref2 = lanczos(h, obj.dim, tol=1e-12, max_iter=300, seed=1)
    row(f"[{lab}] reference S(θ₀) (lanczos tol 1e-12; {ref.n_matvec} HVPs)", f"{s:.12g}")
    row(f"[{lab}] reference vs a second start vector, relative difference", f"{rel_err(ref2.value, s):.1e}")
    if size == "small":
        t = time.perf_counter()
        xc, yc = obj.chunks[0]
        dense = torch.autograd.functional.hessian(lambda p: obj._chunk_loss(p, xc, yc), theta)
        ev = torch.linalg.eigvalsh(0.5 * (dense + dense.T))
        s_dense = float(ev[ev.abs().argmax()])
        row(f"[{lab}] reference vs dense Hessian eigvalsh, relative difference "
            f"({time.perf_counter() - t:.0f} s for the dense check)", f"{rel_err(s, s_dense):.1e}", "≤ 1e-10",
            rel_err(s, s_dense) <= 1e-10)
        del dense
    v_seed = _start_vector(obj.dim, None, 0, torch.float64, "cpu")
    m = oracle_lanczos(h, obj.dim, s, None)
    for tol in (ACC, 1e-4, 1e-3):
        r = lanczos(h, obj.dim, tol=tol)
        ok = r.n_matvec <= 20 and rel_err(r.value, s) <= tol
        row(f"[{lab}] cold sharpness(tol={tol:g}), the library's stop: HVPs / relative error",
            f"{r.n_matvec} / {rel_err(r.value, s):.1e}", "≤ 20 / ≤ 1e-6" if tol == ACC else "",
            ok if tol == ACC else None)
    row(f"[{lab}]   Krylov floor: fewest Lanczos steps from the same start within {ACC:g} (oracle m, tol=0)",
        fmt_n(m))
    n_e, tol_e = eigsh_count(h, obj.dim, s, v_seed)
    row(f"[{lab}] cold ARPACK eigsh (k=1, 'LM', ncv=20 default), HVPs to {ACC:g}",
        f"{fmt_n(n_e)} (tol {tol_e:g})" if n_e else "—")
    cap = 2000 if size == "small" else 1000
    n_p = oracle_power(h, obj.dim, s, None, cap)
    row(f"[{lab}] cold power_iteration, HVPs to {ACC:g}", fmt_n(n_p) if n_p else f"> {cap}")
    top = lanczos(h, obj.dim, k=3, tol=1e-10, max_iter=300).values.tolist()
    log(f"2. cold {size}: S={s:.10g} top3={[f'{x:.5f}' for x in top]} m={m} eigsh={n_e} power={n_p}")
    DETAILS.append(f"Cold start, {lab}: top eigenvalues at θ₀ {', '.join(f'{x:.5f}' for x in top)} "
                   f"(λ₂/λ₁ = {top[1] / top[0]:.4f}).")
    return s


def bench_warm(s0: float) -> None:
    _, model, obj = setup("small")
    lab = label("small", obj)
    t = time.perf_counter()
    gf = run_gradient_flow(obj, model.theta0, loss_threshold=0.01, max_steps=100_000)
    eta_c = gf.eta_c
    row(f"[{lab}] η_c = 2/s_GF from run_gradient_flow (ε = 0.01, {time.perf_counter() - t:.0f} s)",
        f"{eta_c:.5g} (s_GF {gf.s_gf:.4g}; 2/S(θ₀) = {2 / s0:.4g})")
    runs = [("0.5·η_c (stable)", 0.5 * eta_c), ("0.5·2/S(θ₀)", 1.0 / s0), ("2·η_c (EoS)", 2.0 * eta_c)]
    every, n_points, pcap = 50, 12, 300
    for name, eta in runs:
        theta = model.theta0.clone()
        prev = None
        pts = []
        for p in range(n_points + 1):
            if p > 0:
                res = run_gd(obj, theta, eta, loss_threshold=0.0, max_steps=every, log_every=every,
                             progress_seconds=1e9)
                if res.status == DIVERGED:
                    break
                theta, loss = res.theta, res.train_loss
            else:
                loss = float(obj.loss(theta))
            h = obj.hessian_at(theta)
            ref = lanczos(h, obj.dim, k=2, tol=1e-10, max_iter=300)
            s, l2, vec = ref.value, float(ref.values[1]), ref.vector
            if prev is not None:
                pt = dict(step=p * every, loss=loss, s=s, ratio=l2 / s, overlap=abs(float(prev @ vec)),
                          m=oracle_lanczos(h, obj.dim, s, prev))
                r6, r4 = lanczos(h, obj.dim, tol=ACC, v0=prev), lanczos(h, obj.dim, tol=1e-4, v0=prev)
                pt["lib6"], pt["lib4"] = (r6.n_matvec, rel_err(r6.value, s)), (r4.n_matvec, rel_err(r4.value, s))
                tr = krylov_trace(h, obj.dim, prev, 60)
                pt["m4"], pt["m3"] = first_hit(tr, s, 1e-4), first_hit(tr, s, 1e-3)
                pt["eigsh"] = eigsh_count(h, obj.dim, s, prev)[0]
                pt["power"] = oracle_power(h, obj.dim, s, prev, pcap)
                pts.append(pt)
            prev = vec
        ms = [q["m"] if q["m"] is not None else 10**9 for q in pts]
        sms = sorted(ms)
        worst = max(pts, key=lambda q: q["m"] or 10**9)
        eos = [q for q in pts if abs(q["s"] * eta - 2) < 0.1]
        lib6 = [q["lib6"][0] for q in pts]
        row(f"[{lab}] warm sharpness(tol={ACC:g}) along GD η = {name} = {eta:.4g}, steps {every}…{every * len(pts)},"
            f" from the eigenvector {every} steps earlier: HVPs median [max] / max error",
            f"{med(lib6):g} [{max(lib6)}] / {max(q['lib6'][1] for q in pts):.1e}", "≤ 6", max(lib6) <= 6)
        row(f"[{lab}]   same points, Krylov floor (oracle m to {ACC:g}), median [max]",
            f"{_m(sms)} [{fmt_n(worst['m'])} at step {worst['step']}]")
        row(f"[{lab}]   same points, sharpness(tol=1e-4) (run_gd's default): HVPs median [max] / max error",
            f"{med([q['lib4'][0] for q in pts])} [{max(q['lib4'][0] for q in pts)}] / "
            f"{max(q['lib4'][1] for q in pts):.1e}")
        row(f"[{lab}]   same points, oracle HVPs to 1e-4 / 1e-3 relative, median [max]",
            f"{_m([q['m4'] or 10**9 for q in pts])} [{_x([q['m4'] or 10**9 for q in pts])}] / "
            f"{_m([q['m3'] or 10**9 for q in pts])} [{_x([q['m3'] or 10**9 for q in pts])}]")
        e = [q["eigsh"] if q["eigsh"] is not None else 10**9 for q in pts]
        pw = [q["power"] if q["power"] is not None else 10**9 for q in pts]
        row(f"[{lab}]   same points, warm ARPACK eigsh / power_iteration, HVPs to {ACC:g} median [max]",
            f"{_m(e)} [{_x(e)}] / {_m(pw, pcap)} [{_x(pw, pcap)}]")
        log(f"2. warm {name}: m={ms} points at EoS (|ηS-2|<0.1): {len(eos)}")
        lines = [f"Warm start along GD at η = {name} = {eta:.4g} (2/η = {2 / eta:.4g}); solve every {every} steps "
                 f"from the previous point's eigenvector:", "",
                 "| step | loss | S | λ₂/λ₁ | \\|⟨v_prev, v⟩\\| | Lanczos m to 1e-6 | m to 1e-4 / 1e-3 | "
                 "library tol 1e-6: HVPs / error | library tol 1e-4: HVPs / error | eigsh | power |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for q in pts:
            lines.append(f"| {q['step']} | {q['loss']:.4g} | {q['s']:.5f} | {q['ratio']:.4f} | {q['overlap']:.6f} | "
                         f"{fmt_n(q['m'])} | {fmt_n(q['m4'])} / {fmt_n(q['m3'])} | "
                         f"{q['lib6'][0]} / {q['lib6'][1]:.1e} | "
                         f"{q['lib4'][0]} / {q['lib4'][1]:.1e} | {fmt_n(q['eigsh'])} | "
                         f"{fmt_n(q['power']) if q['power'] else f'> {pcap}'} |")
        DETAILS.append("\n".join(lines))
        if name.startswith("2·η_c"):
            eos_rotation(obj, theta, eta, prev, lab)


def _m(xs, cap=None) -> str:
    v = med(sorted(xs))
    return f"> {cap}" if v >= 10**9 else f"{v:g}"


def _x(xs, cap=None) -> str:
    v = max(xs)
    return f"> {cap}" if v >= 10**9 else f"{v:g}"


def eos_rotation(obj, theta, eta, vec_now, lab) -> None:
    """At the last EoS point: warm-start from the eigenvector 1, 2 and 3 steps later (GD continues)."""
    h0 = obj.hessian_at(theta)
    s_prev, v_prev = lanczos(h0, obj.dim, tol=1e-10, max_iter=300).value, vec_now
    out = []
    for k in (1, 2, 3):
        res = run_gd(obj, theta, eta, loss_threshold=0.0, max_steps=1, progress_seconds=1e9)
        theta = res.theta
        h = obj.hessian_at(theta)
        ref = lanczos(h, obj.dim, k=2, tol=1e-10, max_iter=300)
        out.append((k, ref.value, float(ref.values[1]) / ref.value, abs(float(v_prev @ ref.vector)),
                    lanczos(h, obj.dim, tol=ACC, v0=v_prev).n_matvec))
        v_prev = ref.vector
    text = "; ".join(f"+{k} step: S={s:.5f}, λ₂/λ₁={r:.4f}, overlap {o:.6f}, m={fmt_n(m)}" for k, s, r, o, m in out)
    row(f"[{lab}] EoS, sharpness(tol={ACC:g}) warm from the eigenvector 1 step earlier: HVPs (3 consecutive steps)",
        ", ".join(fmt_n(x[4]) for x in out), "≤ 6", all(x[4] is not None and x[4] <= 6 for x in out))
    DETAILS.append(f"EoS (η = {eta:.4g}), consecutive steps after the last point (S there {s_prev:.5f}), each "
                   f"warm-started from the previous step's eigenvector: {text}.")
    log(f"2. EoS step-to-step: {text}")


# ------------------------------------------------------------------------------------------- 3. GD step


def bench_step(size: str) -> None:
    data, model, obj = setup(size)
    _, width = SIZES[size]
    in_dim = math.prod(data.input_shape)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, data.output_dim)).double()
    nn.utils.vector_to_parameters(model.theta0.clone(), plain.parameters())
    x, y, n = data.x_train, data.y_train, data.x_train.shape[0]

    def plain_fb(set_to_none: bool):
        plain.zero_grad(set_to_none=set_to_none)
        loss = 0.5 * (plain(x) - y).pow(2).sum() / n
        loss.backward()
        return loss

    # same loss and gradient
    loss_p = plain_fb(True)
    g_p = torch.cat([p.grad.reshape(-1) for p in plain.parameters()])
    loss_l, g_l = obj.loss_and_grad(model.theta0)
    assert abs(float(loss_p.detach()) - float(loss_l)) < 1e-12 and float((g_p - g_l).norm() / g_l.norm()) < 1e-12

    eta = 0.1
    theta_fixed = model.theta0.clone()
    theta_run = model.theta0.clone()
    in_place = obj.in_place_gradient(theta_run)  # what run_gd's loop calls

    def gd_step():  # run_gd's step: L and ∇L at the current θ, θ ← θ − ηg in place, float(L) for the status
        loss, g = in_place()
        theta_run.add_(g, alpha=-eta)
        return float(loss)

    def gd_step_alloc():  # the same through loss_and_grad(θ) (rebinds views of θ, allocates θ − ηg)
        loss, g = obj.loss_and_grad(theta_fixed)
        _ = theta_fixed - eta * g
        return float(loss)

    def gd_steps(k: int):  # k steps through run_gd itself (trajectory, status checks and all), per step
        run_gd(obj, theta_fixed, eta, loss_threshold=0.0, max_steps=k, log_every=10, progress_seconds=1e9)

    fns = {
        "gd_step": gd_step,
        "gd_step_alloc": gd_step_alloc,
        "run_gd_20": lambda: gd_steps(20),
        "plain_none": lambda: plain_fb(True),
        "plain_zero": lambda: plain_fb(False),
    }
    t = interleaved(fns, 41 if size == "small" else 21, number=20 if size == "small" else 5)
    lab = label(size, obj)
    base = t["plain_none"]  # zero_grad() (PyTorch's default set_to_none=True) then loss.backward()
    r = med_ratio(t["gd_step"], base)
    row(f"[{lab}] GD step as run_gd takes it (in-place gradient + θ −= ηg + float(L)) ÷ plain nn.Sequential "
        f"forward+backward", f"{r:.3f}× ({med(t['gd_step']) * 1e3:.3f} vs {med(base) * 1e3:.3f} ms)", "≤ 1.15×",
        r <= 1.15)
    run_gd_ratio = med_ratio([x / 21 for x in t["run_gd_20"]], base)  # 20 steps + the final gradient
    row(f"[{lab}]   run_gd itself, 20 steps, per gradient ÷ plain", f"{run_gd_ratio:.3f}×")
    row(f"[{lab}]   the same step through loss_and_grad(θ) and θ − ηg (allocating) ÷ plain",
        f"{med_ratio(t['gd_step_alloc'], base):.3f}×")
    row(f"[{lab}]   plain with zero_grad(set_to_none=False) ÷ plain with zero_grad()",
        f"{med_ratio(t['plain_zero'], base):.3f}×")
    log(f"3. step {size}: " + ", ".join(f"{k} {med(v) * 1e3:.3f} ms" for k, v in t.items()))


# ------------------------------------------------------------------------------------------------ report


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = "?"
    return (f"- machine: {cpu}, nproc {os.cpu_count()}, torch threads "
            f"{torch.get_num_threads()}\n- torch {torch.__version__}, scipy {scipy.__version__}, numpy "
            f"{np.__version__}, Python {platform.python_version()}\n- git HEAD {commit} (working tree may differ)")


def report() -> str:
    head = ["| quantity | measured | target | pass |", "|---|---|---|---|"]
    head += [f"| {q} | {m} | {t} | {p} |" for q, m, t, p in ROWS]
    return "\n".join(head)


def main() -> None:
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, nproc {os.cpu_count()}")
    for size in SIZES:
        bench_hvp(size)
    s0 = {}
    for size in SIZES:
        s0[size] = bench_cold(size)
    bench_warm(s0["small"])
    for size in SIZES:
        bench_step(size)
    wall = time.perf_counter() - T0
    table = report()
    print()
    print(table)
    out = Path(__file__).resolve().parent / "RESULTS.md"
    notes = ""
    if out.exists():
        old = out.read_text()
        if "<!-- notes -->" in old:
            notes = old[old.index("<!-- notes -->"):]
    text = (f"# Core benchmarks\n\n"
            f"- command: `python benchmarks/bench_core.py` (from the repository root, in the project's venv)\n"
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
            f"{machine()}\n- float64 on CPU; medians of interleaved rounds; whole script {wall:.0f} s\n\n"
            f"{table}\n\n## Details\n\n" + "\n\n".join(DETAILS) + "\n\n" + (notes or "<!-- notes -->\n"))
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
