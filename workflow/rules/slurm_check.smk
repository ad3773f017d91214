# With the slurm executor: before the first sbatch, every job and group job (at every retry's `attempt`) must fit
# one node of its partition, as `sinfo` reports the nodes. A request that fits none would stay PENDING forever
# (Reason=PartitionConfig); instead the run stops here, naming the rule, its request, the offer and the key.
import re
import shutil
import subprocess


def _minutes(limit):
    """sinfo's time limit ([days-]hh:mm:ss, mm:ss, infinite) in minutes; None for no limit."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, hms = limit.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts)[-3:]
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def _gpus(gres):
    """Number of GPUs in a gres string such as gpu:1, gpu:a100:4(S:0-1) or gres/gpu=2 (0 for none)."""
    found = re.findall(r"gpu(?::[^:,(]+)?[:=](\d+)", str(gres))
    return sum(int(n) for n in found)


def _slurm_nodes(partition):
    """[(CPUs, memory MB, GPUs, time limit minutes or None)] of the partition's nodes, from sinfo."""
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-p", partition, "-o", "%c|%m|%G|%l"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    nodes = []
    for line in out.stdout.split("\n"):
        if line.count("|") == 3:
            cpus, mem, gres, limit = line.split("|")
            nodes.append(
                (int(cpus), int(mem.rstrip("+")), _gpus(gres), _minutes(limit))
            )
    return nodes


def _request(unit):
    """(CPUs, MB, GPUs, minutes) that the slurm executor asks sbatch for, for a job or a group job."""
    res = unit.resources
    gpus = int(res.get("gpu", 0) or 0) or _gpus(res.get("gres", ""))
    cpus = int(res.get("cpus_per_task", 0) or res.get("_cores", 1))
    return cpus, int(res.get("mem_mb", 0)), gpus, int(res.get("runtime", 0))


def _describe(unit):
    if unit.is_group():
        rules = sorted({j.rule.name for j in unit.jobs})
        return f"group job '{unit.groupid}' ({len(unit.jobs)} jobs of {', '.join(rules)}, stacked within `cores`)"
    return f"rule {unit.rule.name}"


def _keys(unit, too_big):
    rules = (
        sorted({j.rule.name for j in unit.jobs})
        if unit.is_group()
        else [unit.rule.name]
    )
    name = {
        "CPUs": "threads (config) / cpus_per_task",
        "MB": "mem_mb",
        "GPUs": "gpu",
        "minutes": "runtime",
    }
    keys = [f"set-resources: {r}: {name[k]}" for r in rules for k in too_big]
    if unit.is_group() and {"CPUs", "minutes"} & set(too_big):
        keys += ["cores", f"group-components: {unit.groupid}"]
    return "; ".join(keys)


def check_slurm_requests():
    """Stop with a message if some job can never start on its partition (returns the messages)."""
    if shutil.which("sinfo") is None:
        return []
    units = {workflow.dag.get_job_group(j) or j for j in workflow.dag.needrun_jobs()}
    units = [u for u in units if not u.is_local]
    retries = workflow.execution_settings.retries
    offers, problems = {}, []
    if config["threads"] > workflow.resource_settings.cores:
        problems.append(
            f"config threads={config['threads']} but the profile's `cores: {workflow.resource_settings.cores}` "
            "caps every job at that many CPUs; set `cores` to at least `threads`."
        )
    for unit in sorted(units, key=str):
        first = unit.attempt
        for attempt in range(first, retries + 2):
            unit.attempt = attempt
            partition = str(unit.resources.get("slurm_partition", ""))
            if partition not in offers:
                offers[partition] = _slurm_nodes(partition) if partition else None
            nodes, ask = offers[partition], _request(unit)
            if nodes is None:
                break  # no partition given: the plugin picks the default one
            fits = [
                n
                for n in nodes
                if n[0] >= ask[0]
                and n[1] >= ask[1]
                and n[2] >= ask[2]
                and (n[3] is None or n[3] >= ask[3])
            ]
            if fits:
                continue
            if not nodes:
                problems.append(
                    f"partition '{partition}' does not exist or has no nodes (sinfo -p {partition}); "
                    "set `default-resources: slurm_partition` in the profile."
                )
                break
            top = [max(n[i] for n in nodes) for i in range(3)]
            limit = [n[3] for n in nodes]
            top.append(None if None in limit else max(limit))
            labels = ("CPUs", "MB", "GPUs", "minutes")
            too_big = [
                lab for lab, a, t in zip(labels, ask, top) if t is not None and a > t
            ] or list(labels[:3])
            problems.append(
                f"{_describe(unit)}, attempt {attempt} of {retries + 1}, asks for "
                + ", ".join(f"{a} {lab}" for a, lab in zip(ask, labels))
                + f"; no node of partition '{partition}' offers that (largest: "
                + ", ".join(
                    f"{'no limit' if t is None else t} {lab}"
                    for t, lab in zip(top, labels)
                )
                + f"). Change {_keys(unit, too_big)}."
            )
            break
        unit.attempt = first
    if problems:  # the same message for many jobs of a rule once, with their number
        counts = {p: problems.count(p) for p in problems}
        raise WorkflowError(
            "SLURM: these jobs would stay PENDING forever, nothing was submitted:\n  "
            + "\n  ".join(
                p + (f" ({n} jobs)" if n > 1 else "") for p, n in counts.items()
            )
        )
    return problems


onstart:
    if (
        workflow.executor_plugin is not None
        and workflow.executor_plugin.name.endswith("slurm")
    ):
        check_slurm_requests()
