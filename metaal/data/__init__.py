"""Real datasets and the episodic class-subset tasks sampled from them."""

from metaal.data.datasets import (
                                  DATASETS,
                                  Dataset,
                                  Part,
                                  load_dataset,
                                  make_dataset,
                                  register_dataset,
                                  resolve_data_root,
)
from metaal.data.episodes import ClassSplit, Episode, EpisodeSampler, EpisodeSpec, split_classes
from metaal.data.synthetic import SYNTHETIC, SYNTHETIC_SOURCES, SyntheticTaskSampler
from metaal.data.task import TaskSpec, budget_notes

__all__ = [
    "DATASETS", "Dataset", "Part", "load_dataset", "make_dataset", "register_dataset", "resolve_data_root",
    "ClassSplit", "Episode", "EpisodeSampler", "EpisodeSpec", "split_classes",
    "SYNTHETIC", "SYNTHETIC_SOURCES", "SyntheticTaskSampler", "TaskSpec", "budget_notes",
]
