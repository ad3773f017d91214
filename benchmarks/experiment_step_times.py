"""Seconds and GFLOP per full-batch gradient and per Hessian-vector product of the experiment configs' models.

Random inputs of the right shape (the timing does not depend on the pixel values), float64, one torch
thread (a job's default), n examples, scaled linearly to the configs' n_train. The wall-time comments in
config/experiments/*.yaml are estimates built from these numbers.

    python benchmarks/experiment_step_times.py [--n 500] [--scale-to 5000]
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from normsharp.models import build_model
from normsharp.objective import NetObjective

MODELS = {  # name: (input shape, model spec), as in config/experiments/*.yaml
    "mnist fcn tanh 200x2": ((1, 28, 28), {"arch": "fcn", "width": 200, "depth": 2, "activation": "tanh"}),
    "cifar fcn tanh 200x2": ((3, 32, 32), {"arch": "fcn", "width": 200, "depth": 2, "activation": "tanh"}),
    "cifar cnn 32x2": ((3, 32, 32), {"arch": "cnn", "width": 32, "depth": 2, "activation": "relu"}),
    "cifar resnet 16x3": ((3, 32, 32), {"arch": "resnet", "width": 16, "depth": 3, "activation": "relu"}),
    "cifar vit 32x2": ((3, 32, 32), {"arch": "vit", "width": 32, "depth": 2, "heads": 4, "patch_size": 4}),
    "mnist fcn mup 64x2": ((1, 28, 28), {"arch": "fcn", "width": 64, "depth": 2, "parametrization": "mup"}),
    "mnist fcn mup 256x2": ((1, 28, 28), {"arch": "fcn", "width": 256, "depth": 2, "parametrization": "mup"}),
    "mnist fcn mup 1024x2": ((1, 28, 28), {"arch": "fcn", "width": 1024, "depth": 2, "parametrization": "mup"}),
}


def seconds(fn, reps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def gflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def timed_calls(obj: NetObjective, theta: torch.Tensor, v: torch.Tensor):
    """The two calls timed: L(θ) with ∇L(θ), and H(θ)v (the Hessian's set-up at θ included)."""
    return (lambda: obj.loss_and_grad(theta)), (lambda: obj.hessian_at(theta)(v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--scale-to", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = args.scale_to / args.n
    print(f"{'model':24s} {'params':>9s} {'grad s':>9s} {'HVP s':>9s} {'grad GF':>9s} {'HVP GF':>9s}"
          f"   (float64, 1 thread, n={args.scale_to})")
    for name, (shape, spec) in MODELS.items():
        if args.only and name not in args.only:
            continue
        model = build_model(spec, shape, 10, seed=0)
        x = torch.randn(args.n, *shape, dtype=torch.float64)
        y = torch.nn.functional.one_hot(torch.arange(args.n) % 10, 10).double()
        obj = NetObjective(model, x, y, "mse")
        gradient, hessian_vector = timed_calls(obj, model.theta0, torch.randn_like(model.theta0))
        grad = seconds(gradient, args.reps) * scale
        hvp = seconds(hessian_vector, args.reps) * scale
        flops = [gflop(gradient) * scale, gflop(hessian_vector) * scale]
        print(f"{name:24s} {model.num_params:9d} {grad:9.3f} {hvp:9.3f} {flops[0]:9.1f} {flops[1]:9.1f}", flush=True)


if __name__ == "__main__":
    main()
