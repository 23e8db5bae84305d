"""Similarity-weighted Elo router: RouteLLM's `sw_ranking` router generalized to K models.

RouteLLM (lm-sys/RouteLLM, routellm/routers/routers.py `SWRankingRouter`, and
routellm/routers/similarity_weighted/utils.py `compute_elo_mle_with_tie`) refits a Bradley-Terry
(Elo) model per incoming prompt on all arena battles, each weighted by `10 * 10 ** (sim / max_sim)`
where sim is the cosine similarity of the battle's prompt to the incoming one; a tie counts as
half a win for each side. Here the battles come from the training score matrix: on each training
query every pair of models fights (higher score wins, equal scores tie, a missing score means no
battle). The per-prompt fit is done for all test prompts at once with Hunter's MM algorithm on the
weighted pairwise win matrices, instead of one logistic regression per prompt.

Quality of model j = its mean predicted win probability against the others, mapped to an expected
score by isotonic regression (pooled over models) so lam means the same as for other routers.
`sharpness` multiplies the exponent of RouteLLM's weighting: 1 is RouteLLM's, whose weights span
only 10x and on llmrouter route like the best single model (0.563); by default it is tuned on the
validation split (else a 10% holdout of train), where 5 reached 0.603 on llmrouter's test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.tuning import holdout, routed_accuracy
from routers.errors import CheckpointError

SHARPNESS_GRID = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)


def battle_matrices(scores: np.ndarray) -> np.ndarray:
    """(n, m, m) wins of row model over column model per query: 1 win, 0.5 tie, 0 loss or missing."""
    a, b = scores[:, :, None], scores[:, None, :]
    w = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    w[np.isnan(a) | np.isnan(b)] = 0.0
    m = scores.shape[1]
    w[:, np.arange(m), np.arange(m)] = 0.0
    return w


def bradley_terry(wins: np.ndarray, iters: int = 200, prior: float = 0.1) -> np.ndarray:
    """Log-strengths (n, m) from weighted win matrices (n, m, m) by MM (Hunter 2004), batched.
    `prior` adds that many tied games between every pair so strengths stay finite."""
    n, m, _ = wins.shape
    off = 1.0 - np.eye(m)
    w = wins + prior * 0.5 * off
    games = w + w.transpose(0, 2, 1)
    won = w.sum(2)
    p = np.ones((n, m))
    for _ in range(iters):
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(2)
        p = won / np.maximum(denom, 1e-12)
        p /= np.exp(np.log(p).mean(1, keepdims=True))
    return np.log(p)


def mean_win_prob(logp: np.ndarray) -> np.ndarray:
    m = logp.shape[1]
    pw = 1.0 / (1.0 + np.exp(-(logp[:, :, None] - logp[:, None, :])))
    return (pw.sum(2) - 0.5) / max(m - 1, 1)


class SWEloRouter(EmbeddingRouter):
    name = "sw-elo"

    def __init__(self, **params):
        params.setdefault("sharpness", None)  # None: tuned over SHARPNESS_GRID
        params.setdefault("seed", 0)
        super().__init__(**params)
        self._calib: tuple[np.ndarray, np.ndarray] | None = None

    def _fit(self, train, validation):
        """Tune `sharpness` (unless given) and fit the isotonic calibration on the validation split,
        else on a seeded 10% of train held out of the battles; then keep all of train's battles."""
        from sklearn.isotonic import IsotonicRegression
        if validation is not None and len(validation):
            fit_on, tune_on = train, validation
        else:
            tr, va = holdout(len(train), 0.1, int(self.params["seed"]))
            fit_on, tune_on = train.subset(tr), train.subset(va)
        self._set_battles(fit_on)
        if self.params["sharpness"] is None:
            acc = {}
            for s in SHARPNESS_GRID:
                raw = self._raw(tune_on.prompts, s)
                acc[s] = routed_accuracy(raw, np.zeros_like(raw), tune_on.scores)
            self.params["sharpness"] = max(acc, key=lambda s: (acc[s], -s))
            self.params["sharpness_tuning_accuracy"] = {str(k): v for k, v in acc.items()}
        raw = self._raw(tune_on.prompts)
        known = ~np.isnan(tune_on.scores)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw[known], tune_on.scores[known])
        self._calib = (np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))
        self._set_battles(train)

    def _set_battles(self, data) -> None:
        self._x = self.embed(data.prompts)
        self._battles = battle_matrices(data.scores).reshape(len(data), -1).astype(np.float32)

    def _raw(self, prompts, sharpness: float | None = None) -> np.ndarray:
        """Mean predicted win probability per (prompt, model), uncalibrated."""
        sharpness = float(self.params["sharpness"] if sharpness is None else sharpness)
        sims = self.embed(prompts) @ self._x.T                                  # (n, t)
        max_sim = np.maximum(sims.max(1, keepdims=True), 1e-6)
        logw = np.log(10.0) * (1.0 + sharpness * sims / max_sim)  # log of 10 * 10**(sharpness * sim / max_sim)
        w = np.exp(logw - logw.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        m = len(self.models)
        ess = 1.0 / (w ** 2).sum(1)                    # Kish effective number of training queries
        wins = (w @ self._battles).reshape(len(prompts), m, m) * ess[:, None, None]
        return mean_win_prob(bradley_terry(wins))

    def predict_quality(self, prompts, categories=None):
        raw = self._raw(prompts)
        if self._calib is None:
            return raw
        return np.interp(raw, *self._calib)

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", x=self._x, battles=self._battles)
        (path / "calibration.json").write_text(json.dumps(
            None if self._calib is None else {"x": self._calib[0].tolist(), "y": self._calib[1].tolist()}))

    def _load_state(self, path: Path) -> None:
        try:
            st = np.load(path / "state.npz")
            cal = json.loads((path / "calibration.json").read_text())
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: missing {Path(e.filename).name}") from None
        self._x, self._battles = st["x"], st["battles"]
        self._calib = None if cal is None else (np.asarray(cal["x"]), np.asarray(cal["y"]))
