"""Images brought to a network's input: unit range, resolution, channels, normalisation."""

from __future__ import annotations

import pytest
import torch

from kdlab.engine.input_adapt import InputSpec, to_input, to_unit


def test_unit_range_round_trip_restores_the_normalised_batch():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    unit = torch.rand(4, 3, 8, 8)
    normalised = (unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(to_unit(normalised, mean, std), unit, atol=1e-6)
    spec = InputSpec.of(3, 8, mean, std)
    assert torch.allclose(to_input(unit, spec), normalised, atol=1e-6)


def test_grey_to_rgb_rgb_to_grey_and_resizing():
    grey = torch.rand(2, 1, 8, 8)
    rgb = to_input(grey, InputSpec.of(3, 8, (0.0,), (1.0,)))
    assert rgb.shape == (2, 3, 8, 8) and torch.equal(rgb[:, 0], rgb[:, 2])
    colour = torch.rand(2, 3, 8, 8)
    luma = to_input(colour, InputSpec.of(1, 8, (0.0,), (1.0,)))
    expected = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    assert torch.allclose(luma[:, 0], expected, atol=1e-6)
    bigger = to_input(colour, InputSpec.of(3, 32, (0.0,) * 3, (1.0,) * 3))
    assert bigger.shape == (2, 3, 32, 32) and bigger.min() >= 0 and bigger.max() <= 1
    constant = torch.full((1, 3, 16, 16), 0.25)
    assert torch.allclose(to_input(constant, InputSpec.of(3, 8, (0.0,) * 3, (1.0,) * 3)), torch.full((1, 3, 8, 8), 0.25))


def test_shapes_that_cannot_be_fed_are_refused():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        to_input(torch.rand(3, 8, 8), InputSpec.of(3, 8, (0.0,), (1.0,)))
    with pytest.raises(ValueError, match="2-channel"):
        to_input(torch.rand(1, 2, 8, 8), InputSpec.of(3, 8, (0.0,), (1.0,)))
    with pytest.raises(ValueError, match="2 normalisation values for 3-channel"):
        to_unit(torch.rand(1, 3, 8, 8), (0.0, 0.0), (1.0, 1.0))
