"""Query strategies: one interface for every strategy, learned or not (base.py), the
uncertainty baselines, the batch-diverse ones, and the lookahead references that only run
in simulation. Each registers itself by name in STRATEGIES."""

from metaal.strategies.base import (STRATEGIES, QueryContext, Selection, Simulation, Strategy, check_query,
                                    gumbel_top_k, make_strategy, register_strategy, simulation_free)
from metaal.strategies.uncertainty import BALD, Entropy, LeastConfidence, Margin, Random
from metaal.strategies.diversity import BADGE, CoreSet
from metaal.strategies.lookahead import (ExpectedGain, OneStepOracle, PoolOracle, candidate_gains, expected_gains,
                                         sample_candidates)

__all__ = [
    "STRATEGIES", "QueryContext", "Selection", "Simulation", "Strategy", "check_query", "gumbel_top_k",
    "make_strategy", "register_strategy", "simulation_free",
    "BALD", "Entropy", "LeastConfidence", "Margin", "Random", "BADGE", "CoreSet",
    "ExpectedGain", "OneStepOracle", "PoolOracle", "candidate_gains", "expected_gains", "sample_candidates",
]
