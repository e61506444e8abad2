"""Capacity planning: a list-scheduling simulation of a suite's stage DAG on a Ray cluster.

    python -m harness.executors.simulate        # the example matrix on 1, 8, 32 and 64 GPUs

The DAG mirrors the Ray executor: one fine-tune per model x task, one stage per distinct
prefix of torch steps, one export per distinct torch pipeline, one build (ONNX steps,
evaluation) and one timing stage per cell. GPU stages take a GPU and `train_cpus` CPUs, builds
take `build_cpus` CPUs, a timing stage takes a dedicated timing node (or, with no timing
nodes, every CPU of a GPU node, as the executor asks when no node offers `harness_timing`).
Ready stages start in priority order wherever they fit, without reservations, as Ray does.
Durations come from `Costs`; docs/scaling.md says where each number comes from.
"""
from __future__ import annotations

import argparse
import heapq
from dataclasses import dataclass, field

# GLUE train / dev sizes (MNLI dev: matched + mismatched).
GLUE = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500),
        "qqp": (363846, 40430), "mnli": (392702, 19647), "qnli": (104743, 5463),
        "rte": (2490, 277), "wnli": (635, 71)}
# The example's 12 method pipelines as (torch steps, ONNX steps).
PIPELINES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    ((), ()), ((), ("int8-dynamic",)), ((), ("int8-static",)), ((), ("int8-static",)),
    (("prune-unstructured-0.5",), ()), (("prune-unstructured-0.9",), ()),
    (("prune-structured",), ()), (("prune-structured",), ("int8-dynamic",)),
    (("prune-structured",), ("int8-static",)), (("distill",), ()),
    (("distill",), ("int8-dynamic",)), (("distill", "prune-structured"), ("int8-dynamic",)),
]


@dataclass(frozen=True)
class Costs:
    """Stage durations in seconds for a MiniLM-L6-sized model; `scale` multiplies them all."""

    finetune_s_per_example: float = 0.056 / 50  # per example-epoch on one GPU
    epochs: float = 3.0
    # torch steps as multiples of the fine-tune of their input model
    torch_ratio: dict[str, float] = field(default_factory=lambda: {
        "distill": 1.5, "prune-structured": 1.75, "prune-unstructured-0.5": 1.2,
        "prune-unstructured-0.9": 1.2})
    after_distill: float = 0.5  # a torch step after distill trains the half-depth student
    export_s: float = 5.0
    onnx_s: dict[str, float] = field(default_factory=lambda: {"int8-dynamic": 5.0,
                                                              "int8-static": 30.0})
    eval_s_per_example: float = 0.006
    timing_s_per_cell: float = 76.0  # 2 providers x 6 shapes
    scale: float = 1.0


@dataclass(frozen=True)
class Stage:
    name: str
    pool: str  # gpu | cpu | timing
    seconds: float
    deps: tuple[int, ...] = ()


def example_dag(costs: Costs, models: int = 5, tasks: dict[str, tuple[int, int]] = GLUE,
                pipelines: list = PIPELINES) -> list[Stage]:
    """Every stage of models x tasks x pipelines, shared stages once (as the executor does)."""
    stages: list[Stage] = []
    index: dict[tuple, int] = {}

    def add(key: tuple, pool: str, seconds: float, deps: tuple[int, ...]) -> int:
        if key not in index:
            index[key] = len(stages)
            stages.append(Stage("/".join(map(str, key)), pool, seconds * costs.scale, deps))
        return index[key]

    for m in range(models):
        for task, (n_train, n_dev) in tasks.items():
            ft_s = costs.finetune_s_per_example * n_train * costs.epochs
            tuned = add((m, task, "finetune"), "gpu", ft_s, ())
            for torch_steps, onnx_steps in pipelines:
                node, factor = tuned, 1.0
                for k, step in enumerate(torch_steps, 1):
                    node = add((m, task, *torch_steps[:k]), "gpu",
                               ft_s * factor * costs.torch_ratio[step], (node,))
                    factor *= costs.after_distill if step == "distill" else 1.0
                node = add((m, task, *torch_steps, "export"), "cpu", costs.export_s, (node,))
                build_s = (sum(costs.onnx_s[s] for s in onnx_steps)
                           + costs.eval_s_per_example * n_dev)
                cell = (m, task, *torch_steps, "|", *onnx_steps, len(index))
                node = add((*cell, "build"), "cpu", build_s, (node,))
                add((*cell, "time"), "timing", costs.timing_s_per_cell, (node,))
    return stages


@dataclass(frozen=True)
class Cluster:
    gpus: int  # GPUs for fine-tunes and torch steps
    gpus_per_node: int = 8
    cpus_per_gpu: int = 12
    train_cpus: int = 4
    build_cpus: int = 4
    timing_nodes: int = 0  # dedicated timing nodes; 0: a timing stage takes a whole GPU node

    def nodes(self) -> list[dict[str, float]]:
        per = min(self.gpus, self.gpus_per_node)
        gpu_nodes = [{"GPU": per, "CPU": per * self.cpus_per_gpu}
                     for _ in range(max(1, self.gpus // per))]
        return gpu_nodes + [{"timing": 1} for _ in range(self.timing_nodes)]

    def demand(self, stage: Stage) -> dict[str, float]:
        if stage.pool == "gpu":
            return {"GPU": 1, "CPU": self.train_cpus}
        if stage.pool == "cpu":
            return {"CPU": self.build_cpus}
        if self.timing_nodes:
            return {"timing": 1}
        return {"CPU": min(self.gpus, self.gpus_per_node) * self.cpus_per_gpu}


def critical_path(stages: list[Stage]) -> list[float]:
    """Per stage, the longest chain of durations from its start to the end of the run."""
    tail = [s.seconds for s in stages]
    for i in reversed(range(len(stages))):  # deps always have lower indices
        for d in stages[i].deps:
            tail[d] = max(tail[d], stages[d].seconds + tail[i])
    return tail


@dataclass
class Result:
    makespan: float
    busy: dict[str, float]  # stage-seconds per pool


def simulate(stages: list[Stage], cluster: Cluster, order: str = "longest") -> Result:
    """List scheduling: at each completion, start ready stages in priority order where they fit.

    order: "fifo" (submission order, as the executor submits) or "longest" (the stage with
    the longest remaining chain first).
    """
    tail = critical_path(stages)
    prio = (lambda i: (-tail[i], i)) if order == "longest" else (lambda i: (i, 0))
    free = cluster.nodes()
    waiting = [len(s.deps) for s in stages]
    children: list[list[int]] = [[] for _ in stages]
    for i, s in enumerate(stages):
        for d in s.deps:
            children[d].append(i)
    ready = [(prio(i), i) for i, s in enumerate(stages) if not s.deps]
    heapq.heapify(ready)
    running: list[tuple[float, int, int]] = []
    now, busy = 0.0, {"gpu": 0.0, "cpu": 0.0, "timing": 0.0}
    while ready or running:
        ready = _start(stages, cluster, free, ready, running, now)
        now, i, node = heapq.heappop(running)
        busy[stages[i].pool] += stages[i].seconds
        for k, v in cluster.demand(stages[i]).items():
            free[node][k] += v
        for c in children[i]:
            waiting[c] -= 1
            if not waiting[c]:
                heapq.heappush(ready, (prio(c), c))
    return Result(now, busy)


def _start(stages: list[Stage], cluster: Cluster, free: list[dict[str, float]], ready: list,
           running: list, now: float) -> list:
    left = []
    for item in sorted(ready):
        i = item[1]
        need = cluster.demand(stages[i])
        node = next((n for n, f in enumerate(free)
                     if all(f.get(k, 0) >= v for k, v in need.items())), None)
        if node is None:
            left.append(item)
            continue
        for k, v in need.items():
            free[node][k] -= v
        heapq.heappush(running, (now + stages[i].seconds, i, node))
    heapq.heapify(left)
    return left


def table(gpu_counts: list[int], costs: Costs, timing_per_8: int) -> str:
    """Makespans of the example matrix: dedicated timing nodes in both stage orders, and
    timing on whole GPU nodes (no `harness_timing` resource), against a lower bound."""
    stages = example_dag(costs)
    counts = {p: sum(s.pool == p for s in stages) for p in ("gpu", "cpu", "timing")}
    work = {p: sum(s.seconds for s in stages if s.pool == p) for p in counts}
    critical = max(critical_path(stages))
    lines = [f"stages: {len(stages)} ({counts['gpu']} GPU, {counts['cpu']} CPU builds, "
             f"{counts['timing']} timing); work: {work['gpu'] / 3600:.1f} GPU-h, "
             f"{work['cpu'] / 3600:.1f} build-slot-h, {work['timing'] / 3600:.1f} timing-node-h;"
             f" critical path {critical / 3600:.2f} h", "",
             "| GPUs | GPU nodes | timing nodes | makespan h, FIFO | longest chain first "
             "| whole-node timing, FIFO | GPU busy (FIFO) | lower bound h |",
             "|---|---|---|---|---|---|---|---|"]
    for n in gpu_counts:
        t = max(1, n * timing_per_8 // 8)
        cluster = Cluster(n, timing_nodes=t)
        fifo, longest = simulate(stages, cluster, "fifo"), simulate(stages, cluster, "longest")
        shared = simulate(stages, Cluster(n), "fifo")
        slots = sum(f.get("CPU", 0) for f in cluster.nodes()) // cluster.build_cpus
        bound = max(critical, work["gpu"] / n, work["timing"] / t, work["cpu"] / slots)
        lines.append(f"| {n} | {len(cluster.nodes()) - t} | {t} | {fifo.makespan / 3600:.1f} "
                     f"| {longest.makespan / 3600:.1f} | {shared.makespan / 3600:.1f} "
                     f"| {work['gpu'] / n / fifo.makespan:.0%} | {bound / 3600:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="model cost relative to MiniLM-L6 (BERT-base: about 8)")
    parser.add_argument("--timing-nodes-per-8-gpus", type=int, default=1)
    args = parser.parse_args(argv)
    print(table(args.gpus, Costs(scale=args.scale), args.timing_nodes_per_8_gpus))


if __name__ == "__main__":
    main()
