"""benchmarks/recipe_screen.py: its job order, its paired report and its packed weights."""
from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import recipe_screen as screen  # noqa: E402


def _report(tmp_path: Path, rows: list[dict], capsys: pytest.CaptureFixture) -> str:
    """What `report` prints for these result lines."""
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    screen.report(path)
    return capsys.readouterr().out


def test_jobs_are_seed_major_and_every_teacher_is_trained_before_it_is_used() -> None:
    todo = screen.jobs([42, 43])
    saved = [j["save"] for j in todo[:2]]
    assert saved == ["l6-mrpc-None-42", "l6-mrpc-stsb-42"]
    assert all(j.get("teacher") in saved for j in todo if j["kind"] != "ft")
    seeds = [j["seed"] for j in todo]
    assert seeds == sorted(seeds)  # a run cut short has every recipe on its first seeds
    per_seed = {s: sum(j["seed"] == s for j in todo) for s in (42, 43)}
    assert per_seed == {42: 15, 43: 15}  # 9 fine-tunes, 3 distillations, 3 KD students


def test_report_pairs_by_seed_and_adjusts_for_the_comparisons(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    rows = []
    for seed, (plain, stilts) in zip((42, 43, 44), [(70.0, 72.0), (68.0, 71.0), (69.0, 70.0)]):
        rows.append({"kind": "ft", "model": "l3", "task": "mrpc", "inter": None, "seed": seed,
                     "acc": plain})
        rows.append({"kind": "ft", "model": "l3", "task": "mrpc", "inter": "stsb", "seed": seed,
                     "acc": stilts})
    rows.append({"kind": "ft", "model": "l6", "task": "rte", "inter": None, "seed": 42,
                 "error": "Traceback\nRuntimeError: out of memory"})
    out = _report(tmp_path, rows, capsys)
    assert "('ft', 'l3', 'mrpc', None): n=3 mean 69.00 sd 1.00 range 68.00-70.00" in out
    # differences 2, 3, 1: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.46 on 2 df: p = 0.074;
    # one comparison, so q = p
    assert "n=3 mean +2.00 (sd 1.00, paired t p=0.074, q=0.074)" in out
    assert "failed: ('ft', 'l6', 'rte', None) 42 RuntimeError: out of memory" in out


def test_report_checks_each_recipe_a_a_on_its_two_halves_of_seeds(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    accs = [70.0, 68.0, 69.0, 72.0, 71.0, 70.0, 99.0]  # the odd seventh seed is left out
    rows = [{"kind": "ft", "model": "l3", "task": "rte", "inter": None, "seed": 42 + i, "acc": a}
            for i, a in enumerate(accs)]
    rows.append({"kind": "ft", "model": "l6", "task": "rte", "inter": None, "seed": 42,
                 "acc": 60.0})  # one seed: no halves to compare
    out = _report(tmp_path, rows, capsys).split("A/A: ", 1)[1]
    # seeds 45-47 against 42-44: differences 2, 3, 1, as in the test above
    assert "('ft', 'l3', 'rte', None) A/A: n=3 mean +2.00 (sd 1.00, paired t p=0.074, q=0.074)" in out
    assert "'l6'" not in out


def test_unpack_restores_the_kept_rows_and_zeros_elsewhere(tmp_path: Path) -> None:
    emb = torch.randn(10, 4)
    ids = torch.tensor([0, 3, 7])
    packed = {"dense.weight": torch.randn(4, 4).half(), "__rows__": emb[ids].half(),
              "__ids__": ids}
    folder = tmp_path / "models" / "l6"
    folder.mkdir(parents=True)
    raw = folder / "packed.safetensors"
    save_file(packed, str(raw), metadata={"emb_key": "emb.weight", "vocab": "10"})
    raw.with_suffix(".safetensors.xz").write_bytes(lzma.compress(raw.read_bytes()))
    raw.unlink()
    screen.unpack(tmp_path)
    sd = load_file(str(folder / "model.safetensors"))
    assert sd["emb.weight"].dtype == torch.float32 and sd["emb.weight"].shape == (10, 4)
    assert torch.equal(sd["emb.weight"][ids], emb[ids].half().float())
    assert not sd["emb.weight"][[1, 2, 4, 5, 6, 8, 9]].any()
    assert torch.equal(sd["dense.weight"], packed["dense.weight"].float())


def test_the_levers_screen_runs_every_recipe_on_every_target_for_each_seed() -> None:
    todo = screen.levers([42, 43])
    assert len(todo) == 2 * len(screen.TARGETS) * len(screen.RECIPES)
    assert [j["seed"] for j in todo] == sorted(j["seed"] for j in todo)
    assert {(j["model"], j["task"], j["recipe"]) for j in todo if j["seed"] == 43} == {
        (m, t, r) for m, t in screen.TARGETS for r in screen.RECIPES}


def test_the_methods_screen_trains_each_arms_teacher_first() -> None:
    todo = screen.methods([42, 43])
    saved = [j["save"] for j in todo[:2]]
    assert saved == ["l6-mrpc-base-42", "l6-mrpc-nodrop-42"]
    uses = [j for j in todo if j["kind"] == "method"]
    assert len(uses) == 2 * 2 * len(screen.METHOD_JOBS)
    assert all(j["teacher"] == f"l6-mrpc-{j['recipe']}-42" for j in uses)


def test_param_groups_give_each_layer_its_rate_and_put_the_optimizer_back(tiny_bert_dir) -> None:
    from transformers import AutoModelForSequenceClassification

    from harness import train
    from harness.schema import FinetuneSpec

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    n, spec, original = model.config.num_hidden_layers, FinetuneSpec(lr=1e-4), train._optimizer
    with screen._param_groups(layer_decay=0.5, head_lr=1e-3):
        opt, _ = train._optimizer(model, spec, 10)
    assert train._optimizer is original
    rate = {id(p): g["initial_lr"] for g in opt.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    harness_decay = {id(p): g["weight_decay"] for g in original(model, spec, 10)[0].param_groups
                     for p in g["params"]}
    assert decay == harness_decay  # the harness's decay rule, not a copy of it
    for name, p in model.named_parameters():
        if name.startswith("bert.embeddings"):
            want = 1e-4 * 0.5 ** (n + 1)
        elif ".layer." in name:
            want = 1e-4 * 0.5 ** (n - int(name.split(".layer.")[1].split(".")[0]))
        else:
            want = 1e-3
        assert rate[id(p)] == pytest.approx(want), name


def test_the_epochs_screen_runs_each_length_on_each_task_longest_first() -> None:
    todo = screen.epochs([42, 43])
    assert [j["seed"] for j in todo] == sorted(j["seed"] for j in todo)
    first = todo[:len(screen.REPRO_TASKS)]
    assert {j["recipe"] for j in first} == {"nodrop_ep10"}  # a seed's longest jobs start first
    assert {(j["task"], j["recipe"]) for j in todo if j["seed"] == 43} == {
        (t, r) for t in screen.REPRO_TASKS for r in screen.EPOCH_RECIPES}
    assert all(screen.EPOCH_RECIPES[r]["dropout"] == 0.0 for r in screen.EPOCH_RECIPES)


def test_report_scores_cola_by_mcc_and_stsb_by_pearson(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    rows = [{"kind": "ft", "model": "l6", "task": "cola", "inter": None, "seed": 42,
             "recipe": "nodrop", "acc": 80.0, "mcc": 40.0},
            {"kind": "ft", "model": "l6", "task": "stsb", "inter": None, "seed": 42,
             "recipe": "nodrop", "pearson": 87.0}]
    out = _report(tmp_path, rows, capsys)
    assert "('ft', 'l6', 'cola', 'nodrop'): n=1 mean 40.00" in out
    assert "('ft', 'l6', 'stsb', 'nodrop'): n=1 mean 87.00" in out


def test_gaps_trains_its_teacher_first_and_only_rte_at_256_tokens() -> None:
    todo = screen.gaps([42, 43, 44, 45])
    assert todo[0]["save"] == "l6-mrpc-nodrop-42"
    assert all(j["teacher"] == "l6-mrpc-nodrop-42" for j in todo if j["kind"] == "method")
    seeds = [j["seed"] for j in todo]
    assert seeds == sorted(seeds)
    long = [(j["seed"], j["params"]["epochs"]) for j in todo if j["kind"] == "method"]
    assert long == [(s, e) for s in (42, 43, 44) for e in screen.SPARSE_EPOCHS]
    at256 = {j["task"] for j in todo if j.get("recipe") == "nodrop_seq256"}
    assert at256 == {"rte"}
    # 4 tasks x 2 recipes + RTE at 256 per seed; seed 42's MRPC fine-tune is the teacher
    assert sum(j["kind"] == "ft" and j["seed"] == 43 for j in todo) == 9
    assert sum(j["kind"] == "ft" and j["seed"] == 42 for j in todo) == 9


def test_report_keys_a_longer_recovery_apart_from_the_suites(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [{"kind": "method", "method": "prune-unstructured", "model": "l6", "task": "mrpc",
             "recipe": "nodrop", "seed": 42 + i, "params": {"sparsity": 0.8, "epochs": e},
             "acc": a} for e, accs in [(3, (70.0, 71.0, 72.0)), (10, (72.0, 74.0, 73.0))]
            for i, a in enumerate(accs)]
    out = _report(tmp_path, rows, capsys)
    # differences 2, 3, 1 as above
    assert ("('method', 'prune-unstructured', 'nodrop', 10, 0) - ('method', "
            "'prune-unstructured', 'nodrop', 3, 0): n=3 mean +2.00 (sd 1.00, paired t p=0.074, q=0.074)") in out
