"""On exit, every Python process appends one JSON line to $NORMSHARP_PEAK_RSS_LOG: its peak RSS and wall time.

Put this folder on PYTHONPATH (benchmarks/rule_resources.py does). ru_maxrss is the kernel's high-water mark of
the process's resident set (KiB on Linux): exact and independent of machine load, unlike sampling.
"""

import atexit
import json
import os
import resource
import sys
import time

_LOG = os.environ.get("NORMSHARP_PEAK_RSS_LOG")
_T0 = time.time()


def _record():
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = {"pid": os.getpid(), "argv": sys.argv[:40], "peak_rss_mb": peak_rss_mb,
            "wall_s": time.time() - _T0, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    with open(_LOG, "a") as fh:
        fh.write(json.dumps(line) + "\n")


if _LOG:
    atexit.register(_record)
