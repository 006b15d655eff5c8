"""What the app knows of the models a cluster serves: facts sent once by a replica, so the
app process never loads a network (``sessions.backend.ServedModels``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stylelens.sessions.protocol import DirectionInfo, ModelInfo
from stylelens.sessions.storage import Storage


@dataclass(frozen=True)
class ModelFacts:
    """One served model as the app sees it (a ``sessions.backend.ServedModel``)."""

    model_id: str
    model_name: str
    model_dir: Path
    resolution: int
    info: ModelInfo
    directions: tuple[DirectionInfo, ...]

    def model_info(self) -> ModelInfo:
        return self.info

    def direction_infos(self) -> list[DirectionInfo]:
        return list(self.directions)


class RemoteModels:
    """The models the replicas serve, by id; a session works with the one it was created for."""

    def __init__(self, facts: list[ModelFacts], storage: Storage) -> None:
        self.by_id = {f.model_id: f for f in facts}
        self.default = facts[0]
        self._storage = storage

    def for_session(self, session: str) -> ModelFacts:
        return self.by_id.get(self._storage.session_model(session), self.default)

    def forget(self, session: str) -> None:
        """Nothing is cached here (each replica checks its own cache against the storage)."""
