"""What every stage function gets: the suite, the artifact cache and the suite's data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.cache import ArtifactCache
    from harness.schema import Suite
    from harness.stages.data import SuiteData


@dataclass
class StageContext:
    suite: Suite
    cache: ArtifactCache
    data: SuiteData
    # what this run already resolved (fine-tunes, built cells): asked again, it is neither
    # re-hashed from the cache nor, with the cache off, rebuilt
    resolved: dict[tuple, Any] = field(default_factory=dict)
