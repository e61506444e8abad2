"""The manifest of a run directory: what ran, where, when; versioned like records."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import SchemaError

MANIFEST_VERSION = 1
# keys that manifests written before schema_version 1 used
_V0_NAMES = {"suite_name": "suite", "started_at": "started", "start": "started",
             "finished_at": "finished", "end": "finished", "git": "git_sha",
             "machine_fingerprint": "machine", "counts": "status_counts"}


class Manifest(BaseModel):
    """manifest.json; fields are filled in as the run goes (a crashed run has no `finished`)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MANIFEST_VERSION
    run_id: str | None = None
    suite: str | None = None
    suite_file: str | None = None
    git_sha: str | None = None
    machine: str | None = None
    env: dict[str, Any] | None = None
    executor: str | None = None
    started: str | None = None
    finished: str | None = None
    cells: int | None = None
    wall_seconds: float | None = None
    status_counts: dict[str, int] | None = None
    resumed: list[str] | None = None  # when the run was resumed (`started`: when it began)


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    out = {_V0_NAMES.get(k, k): v for k, v in data.items()}
    return out | {"schema_version": 1}


def parse_manifest(data: Any, where: str) -> Manifest:
    """Validate a manifest (migrating old ones); SchemaError naming `where` and the field."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: not a JSON object")
    version = data.get("schema_version", 0)
    if not isinstance(version, int):
        raise SchemaError(f"{where}: schema_version must be an integer")
    if version > MANIFEST_VERSION:
        raise SchemaError(f"{where}: schema_version {version} is newer than this harness "
                          f"reads ({MANIFEST_VERSION}); upgrade harness")
    if version == 0:
        data = _v0_to_v1(data)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise SchemaError(f"{where}: {loc}: {first['msg']}") from None
