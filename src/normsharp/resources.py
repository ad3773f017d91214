"""The SLURM memory request of a job, from its setup (measured per rule: ``profiles/README.md``).

Imports only the standard library and :mod:`normsharp.registry`: Snakemake calls it while it builds the DAG.
"""

from __future__ import annotations

from .registry import shape_of

# (input features, training pool, test set) of a dataset the registry gives no shape: synthetic and
# single_point are small, the user's own data is sized by its file.
DEFAULT_SHAPE = (100, 1000, 1000)
BASE_MB = 1500  # Python with torch (≤ 1.1 GB peak RSS measured) and snakemake inside the job


def setup_working_set_mb(setup: dict) -> float:
    """float64 working set of one setup's job, in MB: 8 bytes × (data (n_train + n_test) × d
    + activations 10 × n_train × width × depth + Lanczos basis 220 × parameters).

    ``setup`` is one entry of the config's ``setups`` (its ``dataset`` and ``model`` specs); parameters are
    counted as for an FCN with 10 outputs: d·width + (depth − 1)·width² + 10·width.
    """
    dataset, model = setup["dataset"], setup["model"]
    d, pool, n_test = shape_of(dataset["name"]) or DEFAULT_SHAPE
    n = dataset.get("n_train", pool)
    width, depth = model.get("width", 100), model.get("depth", 2)
    params = d * width + (depth - 1) * width * width + width * 10
    return 8e-6 * ((n + n_test) * d + 10 * n * width * depth + 220 * params)


def job_mem_mb(setup: dict | None, attempt: int, base_mb: int = BASE_MB) -> float:
    """sbatch --mem of a job: attempt × (base_mb + the setup's working set), the sum rounded up to 100 MB.

    ``setup`` is None for a job that belongs to no setup (its request is attempt × base_mb, rounded up)."""
    extra = setup_working_set_mb(setup) if setup is not None else 0
    return attempt * 100 * -(-(base_mb + extra) // 100)
