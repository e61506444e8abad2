"""What every stage function gets: the suite, the artifact cache and the suite's data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.cache import ArtifactCache
    from harness.schema import Suite
    from harness.stages.data import SuiteData


@dataclass
class StageContext:
    suite: Suite
    cache: ArtifactCache
    data: SuiteData
