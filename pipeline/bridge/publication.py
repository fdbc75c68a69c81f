"""What a finished sweep writes to MLflow at its end; it can wait on disk for the server.

Parent params and metrics, artifacts, the model and its registration. If the
tracking server is unreachable then, the publication is saved under
``.regsweep/unpublished/<study>/`` and ``regsweep sync-tracking`` publishes it
later.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import FittedModel
from ..tracking import Tracking

__all__ = ["UNPUBLISHED_DIR", "Publication", "unpublished_dir"]

UNPUBLISHED_DIR = Path(".regsweep") / "unpublished"


@dataclass
class Publication:
    """Everything a finished sweep writes to MLflow at its end."""

    parent_run: str
    registered_model: str | None
    model: FittedModel
    example: bytes  # Parquet: a few rows with the source's column types
    version_tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float | None]
    artifacts: Path  # a directory
    tags: dict[str, str] = field(default_factory=dict)  # of the parent run (its Markdown description)
    result: dict[str, Any] = field(default_factory=dict)

    def publish(self, tracking: Tracking, meanwhile: Callable[[], None] = lambda: None) -> tuple[str, int | None]:
        """Log it all on the parent run and register the model; returns (model URI, version).

        ``meanwhile`` runs while the parameters, metrics and model are being
        logged (in the sweep's tracking process that is 0.3–1 s of MLflow, so
        the driver finishes the plots then); the artifacts it writes are logged
        after it.
        """
        metrics = {k: v for k, v in self.metrics.items() if v is not None}
        calls = [tracking.send("log_params_and_tags", self.parent_run, self.params, self.tags),
                 # the metrics with the model, linked to it in the same request (.tracking.models.log_model)
                 tracking.send("log_model", self.parent_run, self.model, self.example, self.registered_model,
                               self.version_tags, metrics=metrics)]
        meanwhile()
        results = [call.result() for call in calls]
        tracking.log_artifacts(self.parent_run, self.artifacts)
        uri, version = results[-1]
        return str(uri), version

    def save(self, directory: Path) -> Path:
        """Write it under ``directory`` (replacing an older one): model data, example, artifacts, JSON."""
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.model.save(directory / "model")
        (directory / "example.parquet").write_bytes(self.example)
        shutil.copytree(self.artifacts, directory / "artifacts")
        meta = {k: getattr(self, k) for k in ("parent_run", "registered_model", "version_tags", "params", "metrics",
                                              "tags")}
        (directory / "publication.json").write_text(json.dumps(meta, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> Publication:
        meta = json.loads((directory / "publication.json").read_text())
        return cls(model=FittedModel.load(directory / "model"),
                   example=(directory / "example.parquet").read_bytes(),
                   artifacts=directory / "artifacts", **meta)


def unpublished_dir(study_name: str, root: Path | None = None) -> Path:
    """Where a sweep's unpublished results wait (relative to the working directory)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return (root or Path.cwd()) / UNPUBLISHED_DIR / safe
