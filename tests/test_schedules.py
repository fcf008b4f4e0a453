"""Schedules are pure functions of the step: their values at known steps."""

import pytest

from pros_hf import schedules


def test_cosine_endpoints_and_midpoint():
    assert schedules.cosine_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert schedules.cosine_schedule(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert schedules.cosine_schedule(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert schedules.cosine_schedule(500, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert schedules.cosine_schedule(3, 0, 0.1, 0.2) == 0.2


def test_teacher_temperature_warms_up_linearly():
    assert schedules.teacher_temperature(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert schedules.teacher_temperature(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert schedules.teacher_temperature(30, 30, 0.04, 0.07) == pytest.approx(0.07)
    assert schedules.teacher_temperature(5, 0, 0.04, 0.07) == pytest.approx(0.07)


def test_weight_decay_and_momentum_rise():
    values = [schedules.weight_decay(s, 10, 0.04, 0.4) for s in range(11)]
    assert values[0] == pytest.approx(0.04) and values[-1] == pytest.approx(0.4) and values == sorted(values)
    momenta = [schedules.teacher_momentum(s, 10) for s in range(11)]
    assert momenta == sorted(momenta) and momenta[0] == pytest.approx(0.996)


def test_prototypes_frozen():
    assert schedules.prototypes_frozen(0, 5) and schedules.prototypes_frozen(4, 5)
    assert not schedules.prototypes_frozen(5, 5) and not schedules.prototypes_frozen(0, 0)
