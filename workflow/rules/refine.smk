# Opt-in refinement of a relative η grid (eta.refine): round k reads the final sharpness (and test loss) of
# the runs after round k − 1 and adds multiples of η_c inside the bracket of the observed transition; with
# test_minimum, the largest η × extend_factor while the least test loss sits there, else η around it. A
# checkpoint: the runs it adds are known only once it has run; aggregate waits for the last round.


def refine_input(name):
    """The ``name``.json of each run after the previous round, in that round's order."""

    def files(wildcards):
        runs = runs_after(wildcards.setup, wildcards.seed, int(wildcards.round) - 1)
        return [
            f"{R}/{wildcards.setup}/seed{wildcards.seed}/{run}/{name}.json"
            for run in runs
        ]

    return files


checkpoint refine_eta:
    input:
        result=refine_input("result"),
        geometry=refine_input("geometry"),
        test=refine_input("test"),
    output:
        f"{R}/{{setup}}/seed{{seed}}/refine/round{{round}}.json",
    log:
        f"{R}/logs/refine_eta/{{setup}}/seed{{seed}}/round{{round}}.log",
    wildcard_constraints:
        round=r"[1-9]\d*",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=lambda w: {
            k: v for k, v in setup_of(w)["eta"]["refine"].items() if k != "rounds"
        },
        transition_tol=config["transition_tol"],
    script:
        "../scripts/refine_eta.py"
