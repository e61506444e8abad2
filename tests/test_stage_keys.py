"""Cache keys derive from the code a stage runs: transitive, TYPE_CHECKING-free, torch-free."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.methods import METHODS
from harness.stages import keys
from harness.stages.compress import TORCH_STEP
from harness.stages.export import EXPORT
from harness.stages.finetune import FINETUNE


@contextmanager
def edited(monkeypatch: pytest.MonkeyPatch, module: str) -> Iterator[None]:
    """Pretend `module`'s source gained a line, as if someone edited it."""
    real = keys._source

    def fake(name: str):  # noqa: ANN202
        found = real(name)
        if name == module and found is not None:
            return found[0], found[1] + "\n# edited\n"
        return found

    keys.module_closure.cache_clear()
    keys.code_version.cache_clear()
    monkeypatch.setattr(keys, "_source", fake)
    try:
        yield
    finally:
        monkeypatch.setattr(keys, "_source", real)
        keys.module_closure.cache_clear()
        keys.code_version.cache_clear()


def _prune_key() -> str:
    info = METHODS.get("prune-structured")
    return TORCH_STEP.key({"params": {}}, ["upstream"], extra_code=(info.module,))


def test_pruning_runs_the_shared_losses_and_the_training_loop() -> None:
    closure = keys.module_closure(METHODS.get("prune-structured").module)
    assert {"harness.nn", "harness.train", "harness.methods.prune"} <= set(closure)
    assert "harness.publish.html" not in closure


def test_editing_a_loss_used_by_pruning_changes_the_pruning_key(monkeypatch) -> None:
    before = _prune_key()
    with edited(monkeypatch, "harness.nn"):
        after = _prune_key()
    assert after != before
    assert _prune_key() == before  # and back when the edit is undone


def test_editing_an_unrelated_module_changes_nothing(monkeypatch) -> None:
    before = (_prune_key(), FINETUNE.key({}), EXPORT.key({}))
    with edited(monkeypatch, "harness.publish.html"):
        assert (_prune_key(), FINETUNE.key({}), EXPORT.key({})) == before


def test_editing_the_stage_module_itself_changes_its_key(monkeypatch) -> None:
    before = FINETUNE.key({"a": 1})
    with edited(monkeypatch, "harness.stages.finetune"):
        assert FINETUNE.key({"a": 1}) != before


def test_type_checking_imports_are_not_code_that_runs() -> None:
    closure = keys.module_closure("harness.stages.context")
    assert closure == ("harness.stages.context",)


def test_config_and_inputs_are_part_of_the_key() -> None:
    assert FINETUNE.key({"a": 1}) != FINETUNE.key({"a": 2})
    assert FINETUNE.key({"a": 1}, ["x"]) != FINETUNE.key({"a": 1}, ["y"])


def test_validate_and_keys_import_no_torch(tmp_path) -> None:
    code = ("import sys; from pathlib import Path; from harness.plan import check_suite; "
            "from harness.stages import keys; "
            "assert not check_suite(Path('suites/quick.yaml'))[2]; "
            "keys.code_version('harness.methods.prune', 'harness.stages.finetune'); "
            "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_resolves_each_fine_tune_and_cell_once(tmp_path, tiny_glue_dir, tiny_bert_dir
                                                     ) -> None:
    """A method's paired test asks for its baseline again: with the cache off that must not
    fine-tune and build the baseline a second time."""
    from conftest import suite_file

    from harness.cache import ArtifactCache
    from harness.plan import load_suite, plan
    from harness.stages import Stages

    suite, pipelines = load_suite(suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir,
                                             "[baseline, int8-dynamic]"))
    cache = ArtifactCache(tmp_path / "cache", enabled=False)
    built_stages: list[str] = []
    real = cache._build

    def counting(stage, key, build, label):  # noqa: ANN001, ANN202
        built_stages.append(stage)
        return real(stage, key, build, label)

    cache._build = counting
    stages = Stages(suite, cache, tiny_glue_dir)
    base, method = plan(suite, pipelines)
    assert stages.build(method).info["artifact_key"] != stages.build(base).info["artifact_key"]
    assert stages.build(base) is stages.build(base)
    assert built_stages.count("finetune") == 1
