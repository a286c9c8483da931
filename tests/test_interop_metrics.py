"""Checked key conversion (mmgen.interop) and the Fréchet distance (mmgen.metrics)."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from mmgen.interop import KeyMapError, convert_state_dict, load_converted, regex_rename
from mmgen.metrics import feature_statistics, frechet_distance


class Ours(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)


def _theirs():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_convert_with_regex_rules_loads_exactly():
    src = _theirs().state_dict()
    src["num_batches_tracked"] = torch.tensor(3)
    rename = regex_rename([(r"^0\.", "fc1."), (r"^2\.", "fc2."), (r"num_batches_tracked", "")])
    model = load_converted(Ours(), src, rename)
    assert torch.equal(model.fc2.weight, src["2.weight"])


def test_convert_reports_missing_unexpected_and_shapes():
    src = _theirs().state_dict()
    with pytest.raises(KeyMapError, match=r"missing \(4\).*unexpected \(4\)"):
        convert_state_dict(src, Ours())
    src = {"fc1.weight": torch.zeros(8, 5), "fc1.bias": torch.zeros(8),
           "fc2.weight": torch.zeros(2, 8), "fc2.bias": torch.zeros(2)}
    with pytest.raises(KeyMapError, match=r"fc1.weight: got \(8, 5\), expected \(8, 4\)"):
        convert_state_dict(src, Ours())
    fixed = convert_state_dict(src, Ours(), transforms={"fc1.weight": lambda w: w[:, :4]})
    assert fixed["fc1.weight"].shape == (8, 4)


def _pytorch_fid_reference(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The formula as published with pytorch-fid (scipy sqrtm of the product)."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("dim", [1, 8, 64])
def test_frechet_distance_matches_reference(dim):
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(500, dim))
    b = rng.normal(loc=0.3, scale=1.5, size=(400, dim)) @ rng.normal(size=(dim, dim))
    (m1, s1), (m2, s2) = feature_statistics(a), feature_statistics(torch.from_numpy(b))
    ref = _pytorch_fid_reference(m1, s1, m2, s2)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_analytic_and_errors():
    # Two 1-D Gaussians: d² = (μ1 − μ2)² + (σ1 − σ2)².
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]),
                            np.array([3.0]), np.array([[9.0]])) == pytest.approx(4 + 1)
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))
