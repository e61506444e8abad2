"""The capacity simulation that docs/scaling.md quotes, on DAGs small enough to do by hand."""
from __future__ import annotations

from harness.executors.simulate import (
    GLUE,
    PIPELINES,
    Cluster,
    Costs,
    Stage,
    critical_path,
    example_dag,
    simulate,
)

# two fine-tunes on GPUs; a build after the first; its timing after that
DAG = [Stage("ft-a", "gpu", 10.0), Stage("ft-b", "gpu", 10.0),
       Stage("build-a", "cpu", 5.0, (0,)), Stage("time-a", "timing", 3.0, (2,))]


def test_critical_path_is_the_longest_chain_to_the_end() -> None:
    assert critical_path(DAG) == [18.0, 10.0, 8.0, 3.0]


def test_one_gpu_runs_the_fine_tunes_one_after_the_other() -> None:
    result = simulate(DAG, Cluster(gpus=1, timing_nodes=1))
    # ft-a (longest chain) 0-10, ft-b 10-20 while build-a 10-15 and time-a 15-18
    assert result.makespan == 20.0
    assert result.busy == {"gpu": 20.0, "cpu": 5.0, "timing": 3.0}


def test_two_gpus_make_the_critical_path_the_makespan() -> None:
    assert simulate(DAG, Cluster(gpus=2, timing_nodes=1)).makespan == 18.0


def test_fifo_order_can_be_worse_than_longest_first() -> None:
    dag = [Stage("short", "gpu", 1.0), Stage("long", "gpu", 10.0),
           Stage("after-long", "cpu", 10.0, (1,))]
    cluster = Cluster(gpus=1, timing_nodes=1)
    assert simulate(dag, cluster, order="longest").makespan == 20.0
    assert simulate(dag, cluster, order="fifo").makespan == 21.0


def test_without_timing_nodes_timing_takes_a_whole_gpu_node() -> None:
    cluster = Cluster(gpus=8, timing_nodes=0)
    assert cluster.demand(Stage("t", "timing", 1.0)) == {"CPU": 8 * cluster.cpus_per_gpu}


def test_example_dag_has_one_fine_tune_per_model_and_task() -> None:
    stages = example_dag(Costs(), models=2, tasks={"rte": GLUE["rte"], "mrpc": GLUE["mrpc"]})
    fine_tunes = [s for s in stages if s.name.endswith("/finetune")]
    timings = [s for s in stages if s.pool == "timing"]
    assert len(fine_tunes) == 2 * 2
    assert len(timings) == 2 * 2 * len(PIPELINES)
    assert all(d < i for i, s in enumerate(stages) for d in s.deps)  # topological order
