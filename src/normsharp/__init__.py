"""normsharp: norm versus sharpness at the Edge of Stability (arXiv 2505.21423).

The library behind the Snakemake workflow: data, models, losses, full-batch GD, gradient flow (RKC / RK4),
Hessian eigensolvers, norms and evaluation. It imports no Snakemake.
"""

__version__ = "0.2.0"
