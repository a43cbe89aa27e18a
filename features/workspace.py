"""Where a workspace keeps its data, feature repo and models.

A workspace is one directory (``--home``) holding one data set end to end, so
several data sets can live side by side. Pure path arithmetic: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.parquet"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.parquet"

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.parquet"

    @property
    def heldout_path(self) -> Path:
        """Held-out interactions for evaluation; never read by features or training."""
        return self.data_dir / "heldout.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.json"

    @property
    def repo_dir(self) -> Path:
        """The Feast feature repo (feature_store.yaml + definitions)."""
        return self.home / "feature_repo"

    @property
    def offline_dir(self) -> Path:
        """Offline store: the timestamped feature tables, as parquet."""
        return self.repo_dir / "offline"

    @property
    def user_features_path(self) -> Path:
        return self.offline_dir / "user_features"

    @property
    def item_features_path(self) -> Path:
        return self.offline_dir / "item_features"

    @property
    def user_embeddings_path(self) -> Path:
        return self.offline_dir / "user_embeddings"

    @property
    def item_embeddings_path(self) -> Path:
        return self.offline_dir / "item_embeddings"

    @property
    def vocabulary_path(self) -> Path:
        return self.offline_dir / "vocabulary.json"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def example_path(self) -> Path:
        """A user and candidates to paste into ``shoprank rank``."""
        return self.home / "example.json"
