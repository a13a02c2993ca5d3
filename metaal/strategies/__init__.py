"""Query strategies: one interface for every strategy, learned or not (base.py), the
uncertainty baselines, the batch-diverse ones, the cold-start ones (TypiClust, ProbCover), and
the lookahead references that only run in simulation. Each registers itself by name in STRATEGIES."""

# Imported in registration order: the order the registry lists the strategies in.
# isort: off
from metaal.strategies.base import (STRATEGIES, QueryContext, Selection, Simulation, Strategy, check_query,
                                    gumbel_top_k, make_strategy, register_strategy, simulation_free)
from metaal.strategies.uncertainty import BALD, Entropy, LeastConfidence, Margin, Random
from metaal.strategies.diversity import BADGE, ClusterMargin, CoreSet
from metaal.strategies.coldstart import ProbCover, TypiClust
from metaal.strategies.lookahead import (ExpectedGain, OneStepOracle, PoolOracle, candidate_gains, expected_gains,
                                         sample_candidates)
# isort: on

__all__ = [
    "STRATEGIES", "QueryContext", "Selection", "Simulation", "Strategy", "check_query", "gumbel_top_k",
    "make_strategy", "register_strategy", "simulation_free",
    "BALD", "Entropy", "LeastConfidence", "Margin", "Random", "BADGE", "ClusterMargin", "CoreSet",
    "ProbCover", "TypiClust",
    "ExpectedGain", "OneStepOracle", "PoolOracle", "candidate_gains", "expected_gains", "sample_candidates",
]
