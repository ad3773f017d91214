"""Whether a job's SLURM request fits a node of its partition, as ``sinfo`` reports the nodes. Imports no Snakemake.

A request that fits no node would stay PENDING forever (Reason=PartitionConfig); the workflow's ``onstart``
(workflow/rules/slurm_check.smk) stops instead with the messages built here, naming the rule, its request, the
largest offer and the profile key to change.
"""

import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

SINFO_FORMAT = "%c|%m|%G|%l"  # CPUs | memory MB | gres | time limit, one line per node with -N
LABELS = ("CPUs", "MB", "GPUs", "minutes")  # the order of a Node's and a request's fields
PROFILE_KEYS = {"CPUs": "threads (config) / cpus_per_task", "MB": "mem_mb", "GPUs": "gpu", "minutes": "runtime"}


class Node(NamedTuple):
    cpus: int
    mem_mb: int
    gpus: int
    minutes: float | None  # the partition's time limit on it; None for none


@dataclass(frozen=True)
class Submission:
    """What sbatch submits: one job of ``rules[0]``, or a group job of ``jobs`` jobs of ``rules`` (sorted)."""

    rules: tuple[str, ...]
    group: str | None = None
    jobs: int = 1


def minutes(limit: str) -> float | None:
    """sinfo's time limit ([days-]hh:mm:ss, mm:ss, infinite) in minutes; None for no limit."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, hms = limit.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts)[-3:]
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def gpu_count(gres) -> int:
    """Number of GPUs in a gres string such as gpu:1, gpu:a100:4(S:0-1) or gres/gpu=2, summed over its
    entries (0 for none)."""
    found = re.findall(r"gpu(?::[^:,(]+)?[:=](\d+)", str(gres))
    return sum(int(n) for n in found)


def parse_sinfo(text: str) -> list[Node]:
    """The nodes in ``sinfo -h -N -o '%c|%m|%G|%l'`` output; memory is in MB there (a trailing + is dropped),
    lines of another shape are skipped."""
    nodes = []
    for line in text.split("\n"):
        if line.count("|") == 3:
            cpus, mem, gres, limit = line.split("|")
            nodes.append(Node(int(cpus), int(mem.rstrip("+")), gpu_count(gres), minutes(limit)))
    return nodes


def partition_nodes(partition: str) -> list[Node]:
    """The nodes of ``partition`` as ``sinfo`` reports them now ([] when it has none or does not exist)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", SINFO_FORMAT],
                         check=False, capture_output=True, text=True, timeout=60)
    return parse_sinfo(out.stdout)


def request(resources) -> tuple[int, int, int, int]:
    """(CPUs, MB, GPUs, minutes) that the slurm executor asks sbatch for, from a job's resources mapping."""
    gpus = int(resources.get("gpu", 0) or 0) or gpu_count(resources.get("gres", ""))
    cpus = int(resources.get("cpus_per_task", 0) or resources.get("_cores", 1))
    return cpus, int(resources.get("mem_mb", 0)), gpus, int(resources.get("runtime", 0))


def fits(node: Node, ask) -> bool:
    """Whether the node offers at least the request in every field (a node without a time limit, any runtime)."""
    return (node.cpus >= ask[0] and node.mem_mb >= ask[1] and node.gpus >= ask[2]
            and (node.minutes is None or node.minutes >= ask[3]))


def describe(submission: Submission) -> str:
    if submission.group is not None:
        return (f"group job '{submission.group}' ({submission.jobs} jobs of {', '.join(submission.rules)}, "
                "stacked within `cores`)")
    return f"rule {submission.rules[0]}"


def keys_to_change(submission: Submission, too_big: Iterable[str]) -> str:
    """The profile keys that set the fields in ``too_big`` (labels of LABELS) for the submission's rules."""
    too_big = list(too_big)
    keys = [f"set-resources: {r}: {PROFILE_KEYS[k]}" for r in submission.rules for k in too_big]
    if submission.group is not None and {"CPUs", "minutes"} & set(too_big):
        keys += ["cores", f"group-components: {submission.group}"]
    return "; ".join(keys)


def no_node_problem(submission: Submission, ask, nodes: list[Node], partition: str, attempt: int,
                    attempts: int) -> str | None:
    """The message for a request that no node of the partition can run (None when one can): the fields above
    the largest offer are the ones to change (all but the time when none is, i.e. no node offers them together)."""
    if any(fits(n, ask) for n in nodes):
        return None
    if not nodes:
        return (f"partition '{partition}' does not exist or has no nodes (sinfo -p {partition}); "
                "set `default-resources: slurm_partition` in the profile.")
    top = [max(n[i] for n in nodes) for i in range(3)]
    limits = [n.minutes for n in nodes]
    top.append(None if None in limits else max(limits))
    too_big = [lab for lab, a, t in zip(LABELS, ask, top) if t is not None and a > t] or list(LABELS[:3])
    return (f"{describe(submission)}, attempt {attempt} of {attempts}, asks for "
            + ", ".join(f"{a} {lab}" for a, lab in zip(ask, LABELS))
            + f"; no node of partition '{partition}' offers that (largest: "
            + ", ".join(f"{'no limit' if t is None else t} {lab}" for t, lab in zip(top, LABELS))
            + f"). Change {keys_to_change(submission, too_big)}.")


def submission_problem(submission: Submission, request_at: Callable[[int], tuple[str, tuple]],
                       attempts: range, nodes_of: Callable[[str], list[Node]], total_attempts: int) -> str | None:
    """The first attempt of ``attempts`` whose request fits no node, as a message (None when all fit).

    ``request_at(attempt)`` gives (partition, request) at that attempt (resources may grow with it); an
    empty partition is the plugin's default one and is not checked; ``nodes_of(partition)`` lists its nodes."""
    for attempt in attempts:
        partition, ask = request_at(attempt)
        if not partition:
            return None
        problem = no_node_problem(submission, ask, nodes_of(partition), partition, attempt, total_attempts)
        if problem is not None:
            return problem
    return None


def cores_problem(threads: int, cores: int) -> str | None:
    """The message when the config's threads exceed the profile's cores (which cap every job), else None."""
    if threads > cores:
        return (f"config threads={threads} but the profile's `cores: {cores}` "
                "caps every job at that many CPUs; set `cores` to at least `threads`.")
    return None


def pending_report(problems: list[str]) -> str:
    """The error text for jobs that would stay PENDING: each distinct message once, with its count of jobs."""
    counts = {p: problems.count(p) for p in problems}
    return ("SLURM: these jobs would stay PENDING forever, nothing was submitted:\n  "
            + "\n  ".join(p + (f" ({n} jobs)" if n > 1 else "") for p, n in counts.items()))
