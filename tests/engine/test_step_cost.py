"""Step costs measured in turns: the ratio behind a time-matched control."""

from pathlib import Path

import pytest
from tiny_data import tiny_config

from ladseg.engine.step_cost import interleaved_seconds, training_step_seconds


def test_steps_are_timed_in_turns_after_the_warmup_by_their_median() -> None:
    now = [0.0]
    calls: list[str] = []

    def step(name: str, costs: list[float]):
        def run() -> None:
            calls.append(name)
            now[0] += costs.pop(0)

        return run

    # A's first (warm-up) call is slow and one timed call hiccups; neither moves its median
    a = step("a", [50.0, 1.0, 1.0, 9.0, 1.0])
    b = step("b", [3.0, 2.0, 2.0, 2.0, 2.0])
    assert interleaved_seconds([a, b], rounds=4, warmup=1, clock=lambda: now[0]) == [1.0, 2.0]
    assert calls == ["a", "b"] * 5
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        interleaved_seconds([a], rounds=0)


def test_training_steps_of_two_configs_are_timed_without_writing_their_runs(
    tiny_root: Path, tmp_path: Path
) -> None:
    small = tiny_config(tiny_root, tmp_path / "small")
    large = tiny_config(tiny_root, tmp_path / "large", data={"batch_size": 4, "crop_size": [64, 64]})
    seconds = training_step_seconds([small, large], rounds=3, warmup=1)
    assert len(seconds) == 2 and all(0.0 < s < 60.0 for s in seconds)
    assert not (tmp_path / "small").exists() and not (tmp_path / "large").exists()
