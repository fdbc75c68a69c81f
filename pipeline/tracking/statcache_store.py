"""A retrain's block-statistics cache in the tracking server's artifact store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MlflowCache"]


class MlflowCache:
    """Records as artifacts ``statcache/<key>.npz`` of one MLflow run per registered model.

    The run (tagged ``regsweep.kind=statcache``) lives in the sweep's
    experiment; its artifacts go wherever the tracking server stores
    artifacts, so every driver that can reach the server shares the cache.
    Satisfies :class:`pipeline.cv.StatCache`.
    """

    _DIR = "statcache"

    def __init__(self, client: MlflowClient, experiment_id: str, registered_model: str) -> None:
        self.client = client
        tags = {"regsweep.kind": "statcache", "regsweep.model": registered_model}
        flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = client.search_runs([experiment_id], filter_string=flt, max_results=1,
                                  order_by=["attributes.start_time ASC"])
        if runs:
            self.run_id = runs[0].info.run_id
        else:
            run = client.create_run(experiment_id, run_name=f"statcache-{registered_model}", tags=tags)
            self.run_id = run.info.run_id
            client.set_terminated(self.run_id, "FINISHED")
        self.keys = {Path(a.path).stem for a in client.list_artifacts(self.run_id, self._DIR)}
        self.description = f"MLflow run {self.run_id} (artifacts {self._DIR}/)"

    def get(self, key: str) -> bytes | None:
        if key not in self.keys:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(self.run_id, f"{self._DIR}/{key}.npz", tmp)
            return Path(local).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{key}.npz"
            path.write_bytes(data)
            self.client.log_artifact(self.run_id, str(path), self._DIR)
        self.keys.add(key)
