"""The baseline routers under short names: `baton.baselines.KNN().fit(train)`. Each is a
`routers.baselines.base.Router` (fit, route, rank, answer, save_pretrained, from_pretrained)."""

from __future__ import annotations

from routers.baselines.cascade import CascadeRouter as Cascade
from routers.baselines.knn import KNNRouter as KNN
from routers.baselines.mf import MFRouter as MF
from routers.baselines.mlp import MLPRouter as MLP
from routers.baselines.rules import RulesRouter as Rules
from routers.baselines.simple import BestSingleRouter as BestSingle
from routers.baselines.simple import OracleRouter as Oracle
from routers.baselines.simple import RandomRouter as Random
from routers.baselines.sw_elo import SWEloRouter as SWElo

__all__ = ["BestSingle", "Cascade", "KNN", "MF", "MLP", "Oracle", "Random", "Rules", "SWElo"]
