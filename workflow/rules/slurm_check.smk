# With the slurm executor (onstart, in the Snakefile): before the first sbatch, every job and group job (at every retry's `attempt`) must fit
# one node of its partition, as `sinfo` reports the nodes. A request that fits none would stay PENDING forever
# (Reason=PartitionConfig); instead the run stops here, naming the rule, its request, the offer and the key.
# The parsing and the messages are normsharp.slurm; this file reads the DAG's jobs and their resources.
import functools
import shutil

from normsharp import slurm


def _submission(unit):
    """A job or group job of the DAG as normsharp.slurm describes it."""
    if unit.is_group():
        rules = tuple(sorted({j.rule.name for j in unit.jobs}))
        return slurm.Submission(rules, unit.groupid, len(unit.jobs))
    return slurm.Submission((unit.rule.name,))


def _request_at(unit):
    """(partition, request) of the unit at a given attempt (its resources may depend on `attempt`)."""

    def at(attempt):
        unit.attempt = attempt
        partition = str(unit.resources.get("slurm_partition", ""))
        return partition, slurm.request(unit.resources)

    return at


def check_slurm_requests():
    """Stop with a message if some job can never start on its partition (returns the messages)."""
    if shutil.which("sinfo") is None:
        return []
    units = {workflow.dag.get_job_group(j) or j for j in workflow.dag.needrun_jobs()}
    units = [u for u in units if not u.is_local]
    retries = workflow.execution_settings.retries
    nodes_of = functools.cache(slurm.partition_nodes)
    cores = slurm.cores_problem(config["threads"], workflow.resource_settings.cores)
    problems = [cores] if cores else []
    for unit in sorted(units, key=str):
        first = unit.attempt
        problem = slurm.submission_problem(
            _submission(unit),
            _request_at(unit),
            range(first, retries + 2),
            nodes_of,
            retries + 1,
        )
        unit.attempt = first
        if problem:
            problems.append(problem)
    if problems:  # the same message for many jobs of a rule once, with their number
        raise WorkflowError(slurm.pending_report(problems))
    return problems
