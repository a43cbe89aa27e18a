"""The quality gate: `shoprank train` registers every model, and makes the new one
current only if it is not worse than the current one on the validation rows,
beyond TOLERANCE. `--force` makes it current regardless.

The validation rows are the newest tenth of the ranker's training set, which
training.train.fit keeps out of its gradient steps; the held-out split (the
test figures) plays no part in the decision. Both models score the same rows,
with the features this training published, which is what serving the current
model means from now on. A current model with other inputs (another layout)
cannot score them: it is judged by the figure recorded when it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

# AUC. Retrained on the same synthetic workspace with seeds 1-4, each new model
# scored -0.0013 to +0.0026 against the one before it on the same rows: a gate
# much tighter than this would refuse models for their seed.
TOLERANCE = 0.005


@dataclass(frozen=True)
class Standing:
    """The current model, as the gate sees it."""

    version: str
    auc: float | None  # on the new validation rows, or as recorded; None: never measured
    same_rows: bool  # scored on the new model's validation rows


@dataclass(frozen=True)
class Verdict:
    current: bool  # the new model becomes current
    reason: str


def decide(
    new_auc: float, standing: Standing | None, force: bool, tolerance: float = TOLERANCE
) -> Verdict:
    if force:
        return Verdict(True, "--force")
    if standing is None:
        return Verdict(True, "no model was current")
    if standing.auc is None:
        return Verdict(True, f"{standing.version} has no validation figure to compare")
    rows = "on the same rows" if standing.same_rows else "as recorded (other inputs)"
    figures = f"validation AUC {new_auc:.4f} against {standing.auc:.4f} of {standing.version}"
    if new_auc < standing.auc - tolerance:
        return Verdict(False, f"{figures} {rows}: worse by more than {tolerance}")
    return Verdict(True, f"{figures} {rows}, tolerance {tolerance}")
