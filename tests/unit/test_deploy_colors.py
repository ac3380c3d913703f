"""Blue/green arithmetic of the deploy controller: which color is idle, and what each move applies."""

from __future__ import annotations

import pytest

from labkit.deploy import colors
from labkit.deploy.colors import Layout
from labkit.errors import DeployError


def layout(green_weight: int, blue: int = 2, green: int = 0) -> Layout:
    return Layout.from_outputs(
        {
            "blue_version": "1.0.0",
            "green_version": "1.1.0",
            "blue_capacity": blue,
            "green_capacity": green,
            "green_weight": green_weight,
            "preview_color": None,
        }
    )


@pytest.mark.parametrize(("color", "weight", "green_weight"), [
    ("green", 0, 0), ("green", 10, 10), ("green", 100, 100),
    ("blue", 0, 100), ("blue", 10, 90), ("blue", 50, 50), ("blue", 100, 0),
])  # fmt: skip
def test_the_new_colors_weight_is_green_weight_or_its_complement(
    color: colors.Color, weight: int, green_weight: int
) -> None:
    assert colors.green_weight_for(color, weight) == green_weight
    assert colors.weight_of(color, green_weight) == weight
    assert colors.shift(color, weight) == {"green_weight": green_weight}


def test_a_weight_outside_0_to_100_is_refused() -> None:
    with pytest.raises(DeployError, match="not a percentage"):
        colors.green_weight_for("blue", 110)


def test_the_idle_color_is_the_one_without_traffic_in_both_directions() -> None:
    assert colors.pick_idle(layout(0)) == "green"
    assert colors.pick_idle(layout(100, blue=0, green=2)) == "blue"


def test_split_traffic_without_a_deployment_is_refused_with_what_to_do() -> None:
    with pytest.raises(DeployError, match=r"Traffic is split \(blue 1.0.0 x2 at 70%") as err:
        colors.pick_idle(layout(30, green=2))
    assert "labkit rollback" in str(err.value)


def test_a_serving_color_without_capacity_is_refused() -> None:
    with pytest.raises(DeployError, match="blue serves all traffic but has no capacity"):
        colors.pick_idle(layout(0, blue=0))


def test_bring_up_sets_release_capacity_and_preview_of_the_idle_color() -> None:
    assert colors.bring_up("blue", "2.0.0", 2) == {
        "blue_version": "2.0.0",
        "blue_capacity": 2,
        "preview_color": "blue",
    }


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_traffic_to_a_color_with_no_capacity_is_refused(capacity: object) -> None:
    with pytest.raises(DeployError, match="would send traffic to green with capacity"):
        colors.bring_up("green", "2.0.0", capacity)  # type: ignore[arg-type]


def test_restore_gives_the_old_color_everything_and_park_scales_the_new_one_to_0() -> None:
    assert colors.restore("green") == {"green_weight": 0}
    assert colors.restore("blue") == {"green_weight": 100}
    assert colors.park("blue") == {"blue_capacity": 0, "preview_color": None}


def test_a_stack_without_a_deployment_output_says_to_apply_it_first() -> None:
    with pytest.raises(DeployError, match="no applied deployment") as err:
        Layout.from_outputs({})
    assert "apply" in str(err.value.hint)


def test_layout_reads_serving_and_describes_itself() -> None:
    split = layout(30, green=2)
    assert split.serving is None
    assert split.describe() == "blue 1.0.0 x2 at 70%, green 1.1.0 x2 at 30%"
    assert layout(100, green=2).serving == "green"


def test_as_color_accepts_only_the_two_colors() -> None:
    assert colors.as_color("blue") == "blue"
    with pytest.raises(DeployError):
        colors.as_color("red")
