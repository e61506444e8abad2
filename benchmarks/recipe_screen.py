"""Training recipes over many seeds: which lever moves a dev score by more than the seed does?

    python benchmarks/recipe_screen.py run OUT [--screen stilts|levers|methods|epochs|gaps|sparse]
        [--device cuda] [--workers 10] [--seeds 42-49] [--data-dir ../shared/glue] [--packed DIR]
    python benchmarks/recipe_screen.py report OUT/results.jsonl
    python benchmarks/recipe_screen.py pack DIR [--data-dir ../shared/glue] [--models l6,l3]

`run` trains with the harness's own code (harness.train.finetune, the registered `distill`
method, harness.nn.KDLoss, harness.tasks.augment) and the quick suite's recipe (3 epochs,
lr 1e-4, 10 % warm-up, batch 32, mean pooling, length-grouped batches, bf16 autocast where
native), one job per (recipe, seed), and appends one JSON line per job to OUT/results.jsonl.
The recipes are the sixth session's screen (docs/baselines.md):
  * fine-tuning alone, and after an intermediate task (STILTs: the encoder first fine-tuned on
    STS-B, or MRPC for RTE, then a fresh head on the target task), minilm-l3 and minilm-l6 on
    MRPC and RTE;
  * `distill` of minilm-l6 MRPC (3 of 6 layers) from its seed-42 baseline with added inputs:
    2 perturbed copies + 0.8 mismatched pairs per example for half an epoch, 4 + 1.0 for half
    an epoch, 4 + 1.0 for one epoch;
  * minilm-l3 MRPC trained on minilm-l6's soft targets (30 % gold labels, 2 copies + 0.8
    mismatched), from the pretrained encoder or after STS-B, with either minilm-l6 teacher.
`--screen levers` (tenth session) runs RECIPES, levers of the fine-tune itself (no dropout,
layer-wise learning-rate decay, a faster head, two epochs, batch 16), against `base` on
minilm-l6 MRPC and RTE and minilm-l3 MRPC; `--screen methods` runs no dropout against `base`
for distill and both prunings of minilm-l6 MRPC (each from its own recipe's seed-42 baseline)
and for the minilm-l3 RTE fine-tune. (The tenth session's `levers` run switched dropout off
with a model-level switch that this script had before FinetuneSpec.dropout existed: every
dropout module and SDPA's attention rate at 0, checked by two equal training-mode forwards.)
`--screen epochs` (thirteenth session) runs the nightly recipe (suites/reproduce.yaml: no
dropout, 3 epochs) against 6 and 10 epochs on minilm-l6 MRPC, RTE, CoLA (scored by MCC) and
STS-B (Pearson). `--screen gaps` (fifteenth session) runs the nightly recipe against lr 5e-5 on
those four tasks and against 256 tokens on RTE (the one task whose pairs pass 128), and 80 %
unstructured pruning with 3 and 10 epochs of KD recovery on the first three seeds;
`--screen sparse` 20 epochs, and 10 over added inputs. Seed-major order: a run cut short still
has every recipe on its first seeds.
On a machine without the harness's dependencies, put the repository and unpacked wheels of the
missing ones on PYTHONPATH (the thirteenth session's GPU machine lacked pydantic,
pydantic-core, annotated-types, typing-inspection and dill).

`report` prints per recipe the mean, sd and range over seeds and, per comparison, the paired
difference by seed with a paired t-test (the unit that varies is the trained model, so the
test is over seeds, not dev examples) and Benjamini-Hochberg q over the comparisons; then the
same test A/A: each recipe's later half of seeds against its earlier half (nothing should be
flagged; the sixth session's screen: 15 such comparisons, one p < 0.05, none at q < 0.05).

`pack` writes the packaged models (`--models l6,l3`) small enough for a machine reached
through a size-limited copy (the development GPU machine takes 64 MiB): fp16 weights and only
the word-embedding rows that MRPC, RTE, STS-B (with their added inputs) and CoLA look up in
their first 512 tokens; `run --packed DIR` restores fp32 files with zero rows elsewhere. Rows
never looked up change no output; the fp16 rounding moves the encoder's last hidden states by
at most 0.025 (mean magnitude 0.2) on MRPC dev, so a packed run screens recipes, it does not
reproduce a suite's figures.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import multiprocessing as mp
import shutil
import statistics
import time
import traceback
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODELS = {"l6": "minilm-l6", "l3": "minilm-l3"}
TASK_DIRS = {"mrpc": "MRPC", "rte": "RTE", "stsb": "STS-B", "cola": "CoLA"}
MAIN = {"stsb": "pearson", "cola": "mcc"}  # the main metric where it is not accuracy


# the tenth session's screen: levers of the fine-tune itself, each against the quick suite's
# recipe (`base`) on the three baselines whose targets are missed; `nodrop` and `ep2` would
# also shorten the CPU's training (no dropout masks, SDPA attention; a third fewer steps)
RECIPES: dict[str, dict[str, Any]] = {
    "base": {},
    "nodrop": {"dropout": 0.0},                      # FinetuneSpec.dropout: none while training
    "llrd": {"lr": 2e-4, "layer_decay": 0.8},        # top layer and head 2e-4, x0.8 per layer down
    "headlr": {"head_lr": 1e-3},                     # the new head at 10x the encoder's 1e-4
    "ep2": {"epochs": 2, "lr": 1.5e-4},              # a third fewer steps
    "nodrop_ep2": {"dropout": 0.0, "epochs": 2, "lr": 1.5e-4},
    "bs16": {"batch_size": 16},                      # twice the steps of half the size
}
TARGETS = [("l6", "mrpc"), ("l6", "rte"), ("l3", "mrpc")]

# the thirteenth session's screen: the nightly recipe (suites/reproduce.yaml: no dropout,
# 3 epochs) against more epochs at the same learning rate, on the reproduce suite's tasks
# whose targets it misses (MRPC, RTE, CoLA) and on STS-B, which it meets
EPOCH_RECIPES: dict[str, dict[str, Any]] = {
    "nodrop": RECIPES["nodrop"],  # 3 epochs: the nightly recipe
    "nodrop_ep6": RECIPES["nodrop"] | {"epochs": 6},
    "nodrop_ep10": RECIPES["nodrop"] | {"epochs": 10},
}
REPRO_TASKS = ["mrpc", "rte", "cola", "stsb"]

# the fifteenth session's screen: levers not yet measured against the nightly recipe on the
# targets it misses; RTE is the one task whose pairs pass 128 tokens (12 % of train and dev),
# so only RTE is trained at 256
GAP_RECIPES: dict[str, dict[str, Any]] = {
    "nodrop": RECIPES["nodrop"],
    "nodrop_lr5e-5": RECIPES["nodrop"] | {"lr": 5e-5},
    "nodrop_seq256": RECIPES["nodrop"] | {"max_seq_len": 256},
}
# 80 % unstructured pruning with the quick suite's KD recovery, longer: how far is the target?
SPARSE_EPOCHS = [3, 10]
# and, after that screen, longer still or on added inputs (`--screen sparse`)
SPARSE_MORE = [{"epochs": 20}, {"epochs": 10, "augment_copies": 2, "augment_mismatched": 0.5}]


def epochs(seeds: list[int]) -> list[dict[str, Any]]:
    """The thirteenth session's screen, seed-major, the longest trainings of a seed first."""
    return [{"kind": "ft", "model": "l6", "task": t, "inter": None, "seed": s, "recipe": r}
            for s in seeds for r in reversed(EPOCH_RECIPES) for t in REPRO_TASKS]


def levers(seeds: list[int]) -> list[dict[str, Any]]:
    """The tenth session's screen, seed-major: every recipe on every target per seed."""
    return [{"kind": "ft", "model": m, "task": t, "inter": None, "seed": s, "recipe": r}
            for s in seeds for m, t in TARGETS for r in RECIPES]


def gaps(seeds: list[int]) -> list[dict[str, Any]]:
    """The fifteenth session's screen: first the seed-42 minilm-l6 MRPC teacher, then per
    seed the long unstructured recoveries (first three seeds only) and the fine-tunes."""
    first = seeds[0]
    out = [_nodrop_teacher(first)]
    for s in seeds:
        out += [{"kind": "method", "method": "prune-unstructured", "model": "l6", "task": "mrpc",
                 "params": {"sparsity": 0.8, "epochs": e, "distill": True},
                 "teacher": f"l6-mrpc-nodrop-{first}", "seed": s, "recipe": "nodrop"}
                for e in SPARSE_EPOCHS if s < first + 3]
        out += [{"kind": "ft", "model": "l6", "task": t, "inter": None, "seed": s, "recipe": r}
                for t in REPRO_TASKS for r in GAP_RECIPES
                if (r != "nodrop_seq256" or t == "rte")
                and not (s == first and (t, r) == ("mrpc", "nodrop"))]
    return out


def _nodrop_teacher(seed: int) -> dict[str, Any]:
    """The minilm-l6 MRPC fine-tune (nightly recipe) that the pruning jobs distil from."""
    return {"kind": "ft", "model": "l6", "task": "mrpc", "inter": None, "seed": seed,
            "recipe": "nodrop", "save": f"l6-mrpc-nodrop-{seed}"}


def sparse(seeds: list[int]) -> list[dict[str, Any]]:
    """80 % unstructured pruning with KD for 20 epochs, or 10 on added inputs, first seeds."""
    teacher = _nodrop_teacher(seeds[0])
    return [teacher] + [{"kind": "method", "method": "prune-unstructured", "model": "l6",
                         "task": "mrpc", "params": {"sparsity": 0.8, "distill": True, **more},
                         "teacher": teacher["save"], "seed": s, "recipe": "nodrop"}
                        for s in seeds[:3] for more in SPARSE_MORE]


METHOD_JOBS = [("distill", {"epochs": 1, "augment_copies": 4, "augment_mismatched": 1.0}),
               ("prune-unstructured", {"sparsity": 0.8, "epochs": 1, "distill": True}),
               ("prune-structured", {"epochs": 1})]


def methods(seeds: list[int]) -> list[dict[str, Any]]:
    """`nodrop` against `base` for the quick suite's methods on minilm-l6 MRPC, each from the
    seed-42 baseline trained with the same recipe, and for the minilm-l3 RTE fine-tune."""
    first, arms = seeds[0], ("base", "nodrop")
    out: list[dict[str, Any]] = [
        {"kind": "ft", "model": "l6", "task": "mrpc", "inter": None, "seed": first, "recipe": r,
         "save": f"l6-mrpc-{r}-{first}"} for r in arms]
    for s in seeds:
        out += [{"kind": "method", "method": name, "params": params, "model": "l6",
                 "task": "mrpc", "teacher": f"l6-mrpc-{r}-{first}", "seed": s, "recipe": r}
                for name, params in METHOD_JOBS for r in arms]
        out += [{"kind": "ft", "model": "l3", "task": "rte", "inter": None, "seed": s,
                 "recipe": r} for r in arms]
    return out


def jobs(seeds: list[int]) -> list[dict[str, Any]]:
    """The sixth session's screen, seed-major; the two teachers first."""
    first = seeds[0]
    out: list[dict[str, Any]] = [
        {"kind": "ft", "model": "l6", "task": "mrpc", "inter": i, "seed": first,
         "save": f"l6-mrpc-{i}-{first}"} for i in (None, "stsb")]
    fts = [("l3", "mrpc", [None, "stsb"]), ("l6", "mrpc", [None, "stsb"]),
           ("l6", "rte", [None, "stsb", "mrpc"]), ("l3", "rte", [None, "stsb"])]
    teacher, stilts = f"l6-mrpc-None-{first}", f"l6-mrpc-stsb-{first}"
    for s in seeds:
        out += [{"kind": "ft", "model": m, "task": t, "inter": i, "seed": s}
                for m, t, inters in fts for i in inters
                if not (s == first and (m, t) == ("l6", "mrpc"))]
        out += [{"kind": "distill", "model": "l6", "task": "mrpc", "teacher": teacher, "seed": s,
                 "copies": c, "mism": mm, "epochs": ep}
                for c, mm, ep in [(2, 0.8, 0.5), (4, 1.0, 0.5), (4, 1.0, 1.0)]]
        out += [{"kind": "kd", "model": "l3", "teacher_model": "l6", "task": "mrpc",
                 "teacher": tch, "inter": i, "seed": s, "copies": 2, "mism": 0.8, "hard": 0.3}
                for tch, i in [(teacher, None), (teacher, "stsb"), (stilts, "stsb")]]
    return out


ALL_RECIPES = {**RECIPES, **EPOCH_RECIPES, **GAP_RECIPES}


class Screen:
    """One worker's view: where models, data and teachers are, and on which device."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.out, self.device = Path(args.out), args.device
        self.data_dir, self.packed = Path(args.data_dir), args.packed
        self.max_train = args.max_train_samples
        self.teachers = self.out / "teachers"

    def spec(self, **kw: Any) -> Any:
        from harness.schema import FinetuneSpec

        base = dict(epochs=3, lr=1e-4, warmup_ratio=0.1, batch_size=32, max_seq_len=128,
                    precision="auto", pooling="mean", group_by_length=True,
                    max_train_samples=self.max_train)
        return FinetuneSpec(**{**base, **kw})

    def data(self, task: str, split: str) -> Any:
        from harness.tasks import load_split

        return load_split(task, split, data_dir=self.data_dir)

    def fresh(self, model: str, num_labels: int, seed: int) -> tuple[Any, Any]:
        from harness.models import load_model

        name = str(Path(self.packed) / "models" / model) if self.packed else MODELS[model]
        m, tok = load_model(name, num_labels, cache_dir=self.out / "cache", seed=seed,
                            pooling="mean")
        return m.to(self.device), tok

    def score(self, model: Any, tok: Any, task: str, max_len: int = 128) -> dict[str, float]:
        import numpy as np
        import torch
        from scipy.stats import pearsonr
        from sklearn.metrics import f1_score, matthews_corrcoef

        from harness.train import predict

        d = self.data(task, "dev")
        with torch.no_grad():
            logits = np.asarray(predict(model, tok, d, max_len))
        y = np.array(d.labels)
        if task == "stsb":
            return {"pearson": round(float(pearsonr(logits.reshape(len(y), -1)[:, 0], y)[0]) * 100, 2)}
        pred = logits.argmax(-1)
        out = {"acc": round(float((pred == y).mean()) * 100, 2)}
        if task == "cola":
            out["mcc"] = round(float(matthews_corrcoef(y, pred)) * 100, 2)
        if task == "mrpc":
            out["f1"] = round(float(f1_score(y, pred)) * 100, 2)
        return out

    def start(self, model: str, num_labels: int, inter: str | None,
              seed: int) -> tuple[Any, Any, dict]:
        """A fresh model with a new head; with `inter`, its encoder first fine-tuned on that
        task (STILTs), whose dev score comes back too."""
        from harness.tasks.spec import get_task
        from harness.train import finetune

        extra, enc = {}, None
        if inter is not None:
            task = get_task(inter)
            m, tok = self.fresh(model, task.num_labels, seed)
            finetune(m, tok, self.data(inter, "train"), self.spec(seed=seed), task)
            extra, enc = {"inter_score": self.score(m, tok, inter)}, m.bert.state_dict()
        m, tok = self.fresh(model, num_labels, seed)
        if enc is not None:
            m.bert.load_state_dict(enc)
        return m, tok, extra

    def teacher(self, j: dict) -> tuple[Any, Any]:
        import torch

        from harness.tasks.spec import get_task

        path = self.teachers / f"{j['teacher']}.pt"
        for _ in range(900):  # the teacher is an earlier job of the same run
            if path.exists():
                break
            time.sleep(1)
        m, tok = self.fresh(j.get("teacher_model", j["model"]), get_task(j["task"]).num_labels, 0)
        m.load_state_dict(torch.load(path, map_location=self.device))
        if not hasattr(m.config, "pruned_heads"):  # transformers 5 dropped it; distill reads it
            m.config.pruned_heads = {}
        return m.eval(), tok

    def ft(self, j: dict) -> dict:
        import torch

        from harness.tasks.spec import get_task
        from harness.train import finetune

        task = get_task(j["task"])
        m, tok, extra = self.start(j["model"], task.num_labels, j["inter"], j["seed"])
        lever = dict(ALL_RECIPES[j.get("recipe", "base")])
        groups = {k: lever.pop(k) for k in ("layer_decay", "head_lr") if k in lever}
        spec = self.spec(seed=j["seed"], **lever)
        with _param_groups(**groups):
            log = finetune(m, tok, self.data(j["task"], "train"), spec, task)
        if j.get("save"):
            self.teachers.mkdir(parents=True, exist_ok=True)
            tmp = self.teachers / f"{j['save']}.tmp"
            torch.save(m.state_dict(), tmp)
            tmp.rename(tmp.with_suffix(".pt"))
        return {**self.score(m, tok, j["task"], spec.max_seq_len), **extra,
                "precision": log.precision}

    def distill(self, j: dict) -> dict:
        from harness.methods import METHODS, MethodContext
        from harness.methods.params import DistillParams
        from harness.tasks.spec import get_task

        task = get_task(j["task"])
        teacher, tok = self.teacher(j)
        train = self.data(j["task"], "train")
        ctx = MethodContext(task, self.spec(seed=j["seed"]), self.out, tok,
                            load_train=lambda: train, teacher=teacher)
        params = DistillParams(epochs=j["epochs"], augment_copies=j["copies"],
                               augment_mismatched=j["mism"])
        student = METHODS.get("distill").factory(params).apply(teacher, ctx)
        return {**self.score(student, tok, j["task"]),
                "teacher_score": self.score(teacher, tok, j["task"])}

    def method(self, j: dict) -> dict:
        from harness.methods import METHODS, MethodContext
        from harness.tasks.spec import get_task

        task = get_task(j["task"])
        teacher, tok = self.teacher(j)
        train = self.data(j["task"], "train")
        spec = self.spec(seed=j["seed"], **ALL_RECIPES[j["recipe"]])
        ctx = MethodContext(task, spec, self.out / f"w{j['seed']}-{j['recipe']}-{j['method']}",
                            tok, load_train=lambda: train, teacher=teacher)
        entry = METHODS.get(j["method"])
        model = entry.factory(entry.params(**j["params"])).apply(teacher, ctx)
        return {**self.score(model, tok, j["task"]),
                "teacher_score": self.score(teacher, tok, j["task"])}

    def kd(self, j: dict) -> dict:
        from harness.nn import KDLoss
        from harness.tasks.augment import Augment
        from harness.tasks.spec import get_task
        from harness.train import finetune

        task = get_task(j["task"])
        teacher, tok = self.teacher(j)
        m, _, extra = self.start(j["model"], task.num_labels, j["inter"], j["seed"])
        finetune(m, tok, self.data(j["task"], "train"), self.spec(seed=j["seed"]), task,
                 teacher=teacher, kd=KDLoss(alpha_soft=1 - j["hard"], alpha_hard=j["hard"]),
                 more=Augment(j["copies"], j["mism"]))
        return {**self.score(m, tok, j["task"]), **extra,
                "teacher_score": self.score(teacher, tok, j["task"])}


@contextlib.contextmanager
def _param_groups(layer_decay: float = 1.0, head_lr: float | None = None) -> Iterator[None]:
    """harness.train's optimizer with a learning rate per parameter group: the head at
    `head_lr` (default the spec's lr), encoder layer i of L at lr * layer_decay ** (L - i),
    the embeddings at lr * layer_decay ** (L + 1); decay as the harness's (none on biases and
    LayerNorm); the schedule scales every group's rate alike."""
    import re

    import torch

    import harness.train as tr

    if layer_decay == 1.0 and head_lr is None:
        yield
        return
    original = tr._optimizer

    def optimizer(model: Any, spec: Any, total: int) -> tuple[Any, Any]:
        n = model.config.num_hidden_layers
        harness_opt, harness_sched = original(model, spec, total)  # its decay and schedule
        decay = {id(p): g["weight_decay"] for g in harness_opt.param_groups for p in g["params"]}
        groups: dict[tuple[float, float], list] = {}
        for name, p in model.named_parameters():
            if id(p) not in decay:  # frozen
                continue
            if name.startswith("bert.embeddings"):
                lr = spec.lr * layer_decay ** (n + 1)
            elif (hit := re.search(r"encoder\.layer\.(\d+)\.", name)):
                lr = spec.lr * layer_decay ** (n - int(hit.group(1)))
            else:
                lr = head_lr if head_lr is not None else spec.lr
            groups.setdefault((lr, decay[id(p)]), []).append(p)
        opt = torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd}
                                 for (lr, wd), ps in groups.items()], lr=spec.lr, fused=True)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, harness_sched.lr_lambdas[0])

    tr._optimizer = optimizer
    try:
        yield
    finally:
        tr._optimizer = original


def _work(item: tuple[argparse.Namespace, dict]) -> None:
    import torch

    args, j = item
    torch.set_num_threads(args.threads)
    start = time.time()
    try:
        res = getattr(Screen(args), j["kind"])(j)
    except Exception:  # one failed job is recorded and the others go on
        res = {"error": traceback.format_exc()[-800:]}
    line = json.dumps({**j, **res, "s": round(time.time() - start, 1)})
    with open(Path(args.out) / "results.jsonl", "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


def run(args: argparse.Namespace) -> None:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.packed:
        unpack(Path(args.packed))
        args.data_dir = str(Path(args.packed) / "glue")
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    todo = {"levers": levers, "methods": methods, "stilts": jobs,
            "epochs": epochs, "gaps": gaps, "sparse": sparse}[args.screen](seeds)
    print(f"{len(todo)} jobs on {args.device}, {args.workers} workers", flush=True)
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for _ in pool.imap_unordered(_work, [(args, j) for j in todo]):
            pass


def _key(r: dict) -> tuple:
    if r["kind"] == "ft" and "recipe" in r:
        return ("ft", r["model"], r["task"], r["recipe"])
    if r["kind"] == "ft":
        return ("ft", r["model"], r["task"], r["inter"])
    if r["kind"] == "distill":
        return ("distill", r["copies"], r["mism"], r["epochs"])
    if r["kind"] == "method" and r["params"].get("epochs", 1) != 1:  # the fifteenth's
        return ("method", r["method"], r["recipe"], r["params"]["epochs"],
                r["params"].get("augment_copies", 0))
    if r["kind"] == "method":
        return ("method", r["method"], r["recipe"])
    return ("kd", r["inter"], r["teacher"].rsplit("-", 1)[0])


def report(path: Path) -> None:
    by: dict[tuple, dict[int, float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "error" in r:
            print("failed:", _key(r), r["seed"], r["error"].splitlines()[-1])
            continue
        by[_key(r)][r["seed"]] = r[MAIN.get(r["task"], "acc")]
    for key, v in sorted(by.items(), key=str):
        xs = list(v.values())
        sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
        print(f"{key}: n={len(xs)} mean {statistics.mean(xs):.2f} sd {sd:.2f} "
              f"range {min(xs):.2f}-{max(xs):.2f}")
    pairs = [(("distill", 4, 1.0, 0.5), ("distill", 2, 0.8, 0.5)),
             (("distill", 4, 1.0, 1.0), ("distill", 2, 0.8, 0.5)),
             (("distill", 4, 1.0, 1.0), ("distill", 4, 1.0, 0.5))]
    pairs += [(("ft", m, t, "stsb"), ("ft", m, t, None))
              for m, t in [("l3", "mrpc"), ("l6", "mrpc"), ("l6", "rte"), ("l3", "rte")]]
    pairs += [(("ft", "l6", "rte", "mrpc"), ("ft", "l6", "rte", None))]
    pairs += [(("kd", i, t), ("ft", "l3", "mrpc", None))
              for i, t in [(None, "l6-mrpc-None"), ("stsb", "l6-mrpc-None"), ("stsb", "l6-mrpc-stsb")]]
    pairs += [(("ft", m, t, r), ("ft", m, t, "base")) for m, t in TARGETS for r in RECIPES
              if r != "base"]
    pairs += [(("method", name, "nodrop"), ("method", name, "base")) for name, _ in METHOD_JOBS]
    pairs += [(("ft", "l3", "rte", "nodrop"), ("ft", "l3", "rte", "base"))]
    pairs += [(("ft", "l6", t, a), ("ft", "l6", t, b)) for t in REPRO_TASKS
              for a, b in [("nodrop_ep6", "nodrop"), ("nodrop_ep10", "nodrop"),
                           ("nodrop_ep10", "nodrop_ep6")]]
    pairs += [(("ft", "l6", t, r), ("ft", "l6", t, "nodrop")) for t in REPRO_TASKS
              for r in GAP_RECIPES if r != "nodrop"]
    pairs += [(("method", "prune-unstructured", "nodrop", e, c),
               ("method", "prune-unstructured", "nodrop", SPARSE_EPOCHS[0], 0))
              for e, c in [(SPARSE_EPOCHS[1], 0),
                           *[(m["epochs"], m.get("augment_copies", 0)) for m in SPARSE_MORE]]]
    rows = []
    for a, b in pairs:
        seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
        rows.append((f"{a} - {b}", [by[a][s] for s in seeds], [by[b][s] for s in seeds]))
    _paired(rows)
    print("A/A: each recipe's later seeds against its earlier ones, paired in order "
          "(no difference expected):")
    halves = []
    for key, v in sorted(by.items(), key=str):
        seeds = sorted(v)
        h = len(seeds) // 2
        halves.append((f"{key} A/A", [v[s] for s in seeds[h:2 * h]], [v[s] for s in seeds[:h]]))
    _paired(halves)


def _paired(rows: list[tuple[str, list[float], list[float]]]) -> None:
    """Per comparison: mean paired difference, paired t-test over seeds, and Benjamini-Hochberg
    q over the comparisons given (those with at least three pairs)."""
    from scipy.stats import false_discovery_control, ttest_rel

    rows = [r for r in rows if len(r[1]) > 2]
    ps = [ttest_rel(a, b).pvalue for _, a, b in rows]
    qs = false_discovery_control(ps) if rows else []
    for (name, a, b), p, q in zip(rows, ps, qs):
        d = [x - y for x, y in zip(a, b)]
        print(f"{name}: n={len(d)} mean {statistics.mean(d):+.2f} "
              f"(sd {statistics.stdev(d):.2f}, paired t p={p:.2g}, q={q:.2g})")


def pack(args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from harness.models import catalogue_dir, load_model
    from harness.tasks import load_split
    from harness.tasks.augment import Augment, augment

    out, data_dir = Path(args.dir), Path(args.data_dir)
    tok = load_model("minilm-l6", 2, cache_dir=Path(args.cache_dir))[1]
    models = {k: MODELS[k] for k in args.models.split(",")}
    if "l3" in models:
        load_model("minilm-l3", 2, cache_dir=Path(args.cache_dir))  # converts it once
    used = {tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id}
    for task in TASK_DIRS:
        for split in ("train", "dev"):
            d = load_split(task, split, data_dir=data_dir)
            for x in [d] + ([augment(d, Augment(4, 1.0), s) for s in range(3)]
                            if split == "train" and d.text_b is not None else []):
                pairs = list(x.text_b) if x.text_b is not None else None
                for ids in tok(list(x.text_a), pairs, truncation=True, max_length=512)["input_ids"]:
                    used.update(ids)
            dst = out / "glue" / TASK_DIRS[task]
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(data_dir / TASK_DIRS[task] / f"{split}.tsv", dst / f"{split}.tsv")
    ids = torch.tensor(sorted(used), dtype=torch.int64)
    for short, name in models.items():
        src = catalogue_dir(name, Path(args.cache_dir))
        dst = out / "models" / short
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.suffix in (".json", ".txt") and f.name != "artifact.json":
                shutil.copy(f, dst / f.name)
        sd = load_file(str(src / "model.safetensors"))
        key = next(k for k in sd if k.endswith("word_embeddings.weight"))
        packed = {k: v.half().contiguous() for k, v in sd.items() if k != key}
        packed["__rows__"], packed["__ids__"] = sd[key][ids].half().contiguous(), ids
        raw = dst / "packed.safetensors"
        save_file(packed, str(raw), metadata={"emb_key": key, "vocab": str(sd[key].shape[0])})
        raw.with_suffix(".safetensors.xz").write_bytes(lzma.compress(raw.read_bytes()))
        raw.unlink()
    print(f"{len(ids)} embedding rows kept; {out}")


def unpack(packed: Path) -> None:
    """Restore fp32 model.safetensors beside each packed file (once)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    for xz in sorted(packed.glob("models/*/packed.safetensors.xz")):
        target = xz.parent / "model.safetensors"
        if target.exists():
            continue
        raw = xz.with_suffix("")
        raw.write_bytes(lzma.decompress(xz.read_bytes()))
        with safe_open(str(raw), "pt") as f:
            meta = f.metadata()
        sd = load_file(str(raw))
        raw.unlink()
        ids, rows = sd.pop("__ids__"), sd.pop("__rows__")
        emb = torch.zeros(int(meta["vocab"]), rows.shape[1])
        emb[ids] = rows.float()
        save_file({**{k: v.float() for k, v in sd.items()}, meta["emb_key"]: emb}, str(target))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--device", default="cpu")
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    r.add_argument("--seeds", default="42-49")
    r.add_argument("--data-dir", default="../shared/glue")
    r.add_argument("--packed", help="a folder written by `pack`")
    r.add_argument("--max-train-samples", type=int, help="a smoke check, not a screen")
    r.add_argument("--screen", choices=["stilts", "levers", "methods", "epochs", "gaps", "sparse"],
                   default="stilts", help="stilts: the sixth session's jobs; levers, methods: "
                   "the tenth's; epochs: the thirteenth's; gaps, sparse: the fifteenth's")
    p = sub.add_parser("pack")
    p.add_argument("dir")
    p.add_argument("--data-dir", default="../shared/glue")
    p.add_argument("--cache-dir", default="results/cache")
    p.add_argument("--models", default="l6,l3", help="which packaged models: l6, l3 or both")
    s = sub.add_parser("report")
    s.add_argument("results", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    elif args.cmd == "pack":
        pack(args)
    else:
        report(args.results)


if __name__ == "__main__":
    main()
