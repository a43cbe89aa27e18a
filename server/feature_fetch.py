"""Online feature reads through the Feast SDK: one batched read per entity type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from server.errors import FeatureStoreUnavailable, StartupError
from server.feature_rows import ItemRows, UserRow

if TYPE_CHECKING:
    from feast import FeatureStore

USER_VIEW: Final = "user_features"
ITEM_VIEW: Final = "item_features"
USER_REFS: Final = tuple(f"{USER_VIEW}:{n}" for n in ("user_vector", "user_bias", "user_activity"))
ITEM_REFS: Final = tuple(
    f"{ITEM_VIEW}:{n}" for n in ("item_vector", "item_bias", "item_conversion", "item_price")
)


def vectors_from_lists(values: Sequence[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [n, dim] with zero rows for None, bool [n] known)."""
    known = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    out = np.zeros((len(values), dim), dtype=np.float32)
    if known.any():
        out[known] = np.asarray([v for v in values if v is not None], dtype=np.float32)
    return out, known


def scalars(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([0.0 if v is None else v for v in values], dtype=np.float32)


class FeastFeatures:
    """Reads user and item features from the Feast online store of a repo."""

    def __init__(self, repo_dir: Path) -> None:
        self._repo_dir = repo_dir
        self._store: FeatureStore | None = None

    def load(self) -> None:
        if not (self._repo_dir / "feature_store.yaml").exists():
            raise StartupError(
                f"no Feast repo at {self._repo_dir}; run `shoprank features apply` first"
            )
        from feast import FeatureStore

        self._store = FeatureStore(repo_path=str(self._repo_dir))

    @property
    def store(self) -> FeatureStore:
        if self._store is None:
            raise RuntimeError("FeastFeatures.load() was not called")
        return self._store

    def service_refs(self, name: str) -> set[str]:
        """The "view:feature" refs a FeatureService names."""
        try:
            service = self.store.get_feature_service(name)
        except Exception as error:
            raise StartupError(f"FeatureService {name!r} is not registered: {error}") from None
        return {
            f"{projection.name_to_use()}:{feature.name}"
            for projection in service.feature_view_projections
            for feature in projection.features
        }

    def _read(self, refs: Sequence[str], rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        try:
            response = self.store.get_online_features(features=list(refs), entity_rows=rows)
            result: dict[str, list[Any]] = response.to_dict(include_event_timestamps=True)
        except Exception as error:
            raise FeatureStoreUnavailable(
                f"feature store read failed ({type(error).__name__}: {error}); "
                "check the online store is reachable"
            ) from error
        return result

    def user(self, user_id: str) -> UserRow:
        values = self._read(USER_REFS, [{"user_id": user_id}])
        vector = values["user_vector"][0]
        if vector is None:
            return UserRow(np.zeros(0, np.float32), 0.0, 0.0, False, 0.0)
        return UserRow(
            vector=np.asarray(vector, dtype=np.float32),
            bias=float(values["user_bias"][0] or 0.0),
            activity=float(values["user_activity"][0] or 0.0),
            known=True,
            timestamp=float(values["user_vector__ts"][0]),
        )

    def items(self, item_ids: Sequence[str]) -> ItemRows:
        values = self._read(ITEM_REFS, [{"item_id": i} for i in item_ids])
        raw = values["item_vector"]
        dim = next((len(v) for v in raw if v is not None), 0)
        vectors, known = vectors_from_lists(raw, dim)
        return ItemRows(
            vectors=vectors,
            bias=scalars(values["item_bias"]),
            conversion=scalars(values["item_conversion"]),
            price=scalars(values["item_price"]),
            known=known,
            timestamp=np.where(known, np.asarray(values["item_vector__ts"], np.float64), 0.0),
        )
