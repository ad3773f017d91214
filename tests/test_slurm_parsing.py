"""normsharp.slurm without a cluster: sinfo's output, a job's request, and the messages for one no node can run."""

import pytest

from normsharp.slurm import (
    Node,
    Submission,
    cores_problem,
    gpu_count,
    keys_to_change,
    minutes,
    no_node_problem,
    parse_sinfo,
    pending_report,
    request,
    submission_problem,
)

# `sinfo -h -N -p PART -o '%c|%m|%G|%l'` of a partition with three node types (memory in MB, + when it varies)
MIXED = """\
64|257000+|gpu:a100:4(S:0-1)|2-00:00:00
32|128000|gpu:v100:2,gpu:t4:1|1-12:00:00
16|64000|(null)|1-12:00:00
"""
MIXED_NODES = [Node(64, 257000, 4, 2880.0), Node(32, 128000, 3, 2160.0), Node(16, 64000, 0, 2160.0)]


@pytest.mark.parametrize("limit, expected", [
    ("infinite", None), ("UNLIMITED", None), ("n/a", None), ("", None),
    ("1-00:00:00", 1440), ("2-01:30:30", 2 * 1440 + 90.5), ("12:00:00", 720), ("30:00", 30), ("00:00:30", 0.5),
])
def test_minutes_of_sinfo_time_limits(limit, expected):
    assert minutes(limit) == expected


@pytest.mark.parametrize("gres, expected", [
    ("(null)", 0), ("", 0), ("gpu:1", 1), ("gpu:a100:4(S:0-1)", 4), ("gpu:v100:2,gpu:t4:1", 3),
    ("gres/gpu=2", 2), ("gpu:a100:4(IDX:0-3),shard:8", 4), (None, 0),
])
def test_gpu_count_of_gres_strings(gres, expected):
    assert gpu_count(gres) == expected


def test_parse_sinfo_reads_each_node_type_and_skips_other_lines():
    assert parse_sinfo(MIXED) == MIXED_NODES
    assert parse_sinfo("NODELIST|CPUS\n\n8|4000|(null)|infinite\n") == [Node(8, 4000, 0, None)]
    assert parse_sinfo("") == []


def test_request_as_the_slurm_executor_asks_for_it():
    assert request({"_cores": 2, "mem_mb": 1500, "runtime": 30}) == (2, 1500, 0, 30)
    assert request({"_cores": 2, "cpus_per_task": 8, "mem_mb": 1500}) == (8, 1500, 0, 0)
    assert request({"cpus_per_task": 0, "gres": "gpu:a100:2"}) == (1, 0, 2, 0)
    assert request({"gpu": 1, "gres": "gpu:a100:2", "mem_mb": 1e3}) == (1, 1000, 1, 0)


def test_a_request_some_node_offers_has_no_problem():
    assert no_node_problem(Submission(("train_gd",)), (48, 200000, 4, 2000), MIXED_NODES, "gpu", 1, 1) is None
    # a node without a time limit runs any runtime
    assert no_node_problem(Submission(("a",)), (1, 1, 0, 10**6), [Node(1, 1, 0, None)], "p", 1, 1) is None


def test_memory_above_every_node_names_mem_mb_and_the_largest_offer():
    message = no_node_problem(Submission(("gradient_flow",)), (1, 300000, 0, 60), MIXED_NODES, "gpu", 2, 3)
    assert message == (
        "rule gradient_flow, attempt 2 of 3, asks for 1 CPUs, 300000 MB, 0 GPUs, 60 minutes; no node of partition "
        "'gpu' offers that (largest: 64 CPUs, 257000 MB, 4 GPUs, 2880.0 minutes). "
        "Change set-resources: gradient_flow: mem_mb.")


def test_each_field_is_within_some_node_but_no_node_has_them_all():
    """Many CPUs on one node type, much memory on another: no field is above the largest offer, so CPUs, MB and
    GPUs are named (the time limit is not the obstacle when a node has none)."""
    nodes = parse_sinfo("64|64000|(null)|infinite\n8|257000|gpu:4|1:00:00\n")
    assert no_node_problem(Submission(("a",)), (64, 64000, 0, 10**5), nodes, "mixed", 1, 1) is None
    message = no_node_problem(Submission(("a",)), (32, 128000, 0, 30), nodes, "mixed", 1, 1)
    assert message == (
        "rule a, attempt 1 of 1, asks for 32 CPUs, 128000 MB, 0 GPUs, 30 minutes; no node of partition 'mixed' "
        "offers that (largest: 64 CPUs, 257000 MB, 4 GPUs, no limit minutes). Change set-resources: a: "
        "threads (config) / cpus_per_task; set-resources: a: mem_mb; set-resources: a: gpu.")


def test_a_group_job_over_cpus_and_time_names_cores_and_group_components():
    group = Submission(("evaluate_geometry", "evaluate_test"), "evals", 6)
    nodes = [Node(8, 32000, 0, None), Node(4, 64000, 0, 60.0)]
    message = no_node_problem(group, (16, 1000, 0, 90), nodes, "cpu", 1, 2)
    assert message == (
        "group job 'evals' (6 jobs of evaluate_geometry, evaluate_test, stacked within `cores`), attempt 1 of 2, "
        "asks for 16 CPUs, 1000 MB, 0 GPUs, 90 minutes; no node of partition 'cpu' offers that (largest: 8 CPUs, "
        "64000 MB, 0 GPUs, no limit minutes). Change set-resources: evaluate_geometry: threads (config) / "
        "cpus_per_task; set-resources: evaluate_test: threads (config) / cpus_per_task; cores; "
        "group-components: evals.")
    assert keys_to_change(group, ["GPUs"]) == "set-resources: evaluate_geometry: gpu; set-resources: evaluate_test: gpu"
    assert keys_to_change(group, ["minutes"]).endswith("; cores; group-components: evals")


def test_a_partition_without_nodes():
    assert no_node_problem(Submission(("a",)), (1, 1, 0, 0), [], "nope", 1, 1) == (
        "partition 'nope' does not exist or has no nodes (sinfo -p nope); "
        "set `default-resources: slurm_partition` in the profile.")


def test_submission_problem_checks_attempts_in_order_and_stops_at_the_first_problem():
    asked, listed = [], []

    def request_at(attempt):
        asked.append(attempt)
        return "short", (1, 4000 * attempt, 0, 20 * attempt)

    def nodes_of(partition):
        listed.append(partition)
        return parse_sinfo("4|8000|(null)|30:00\n4|16000|gres/gpu=1|1:00:00\n")

    message = submission_problem(Submission(("train_gd",)), request_at, range(1, 6), nodes_of, 5)
    assert asked == [1, 2, 3, 4] and listed == ["short"] * 4
    assert message.startswith("rule train_gd, attempt 4 of 5, asks for 1 CPUs, 16000 MB, 0 GPUs, 80 minutes;")
    assert message.endswith("(largest: 4 CPUs, 16000 MB, 1 GPUs, 60.0 minutes). Change set-resources: train_gd: "
                            "runtime.")


def test_submission_problem_skips_the_default_partition_and_requests_that_fit():
    def nodes_of(partition):
        raise AssertionError("the default partition is not listed")

    assert submission_problem(Submission(("a",)), lambda a: ("", (10**6, 0, 0, 0)), range(1, 3), nodes_of, 2) is None
    fits = submission_problem(Submission(("a",)), lambda a: ("cpu", (a, 1, 0, 1)), range(1, 4),
                              lambda p: [Node(8, 10, 0, None)], 3)
    assert fits is None


def test_cores_problem_and_the_report_counts_repeated_messages():
    assert cores_problem(2, 2) is None
    cores = cores_problem(4, 2)
    assert cores == ("config threads=4 but the profile's `cores: 2` caps every job at that many CPUs; "
                     "set `cores` to at least `threads`.")
    assert pending_report([cores, "rule a: x", "rule b: y", "rule a: x"]) == (
        "SLURM: these jobs would stay PENDING forever, nothing was submitted:\n"
        f"  {cores}\n  rule a: x (2 jobs)\n  rule b: y")
