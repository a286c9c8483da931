"""The small-image VAE (mmgen.vae.ConvVAE) and its ELBO objective, against
torch.distributions as the reference for every density."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import mmgen
from mmgen.vae import ConvVAEConfig, ELBOObjective


def _vae(likelihood: str = "bernoulli", size: int = 28, channels: int = 1):
    torch.manual_seed(0)
    return mmgen.create_model("vae/conv/tiny", likelihood=likelihood, image_size=size,
                              channels=channels)


def _images(n=5, size=28, channels=1, binary=True):
    x = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))
    return (x > 0.5).float() if binary else x


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 1)])
def test_shapes(size, channels):
    vae = _vae(size=size, channels=channels)
    x = _images(3, size, channels)
    q = vae.encode(x)
    assert q.mean.shape == (3, 4)
    assert vae.decode(q.sample()).shape == x.shape
    images = vae(vae.sample_latents(2))
    assert images.shape == (2, channels, size, size) and images.abs().max() <= 1


def _reference_log_weights(vae, x, z):
    """log p(x | z) + log p(z) - log q(z | x) by torch.distributions: (K, B)."""
    q = vae.encode(x)
    q_dist = Normal(q.mean, q.std)
    out = []
    for zk in z:
        params = vae.decode(zk)
        px = Bernoulli(logits=params) if vae.config.likelihood == "bernoulli" \
            else Normal(params, vae.log_std.exp())
        out.append(px.log_prob(x).flatten(1).sum(1) + Normal(0, 1).log_prob(zk).sum(1)
                   - q_dist.log_prob(zk).sum(1))
    return torch.stack(out)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_importance_weighted_estimate_matches_torch_distributions(likelihood):
    vae = _vae(likelihood)
    x = _images(binary=likelihood == "bernoulli")
    samples = 7
    ours = vae.log_likelihood(x, samples, torch.Generator().manual_seed(3))
    q = vae.encode(x)
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order
    z = torch.stack([q.sample(g) for _ in range(samples)])
    with torch.no_grad():
        ref = torch.logsumexp(_reference_log_weights(vae, x, z), dim=0) - math.log(samples)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_elbo_terms_match_torch_distributions():
    vae = _vae()
    x = _images()
    out = vae.elbo(x, beta=1.0, generator=torch.Generator().manual_seed(4))
    q = vae.encode(x)
    kl = kl_divergence(Normal(q.mean, q.std), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-5, atol=1e-5)
    z = q.sample(torch.Generator().manual_seed(4))
    rec = Bernoulli(logits=vae.decode(z)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(out["reconstruction"], rec, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["elbo"], rec - kl, rtol=1e-5, atol=1e-4)


def test_more_importance_samples_tighten_the_bound():
    """On average over images: ELBO <= IWAE(10) <= IWAE(200) (Burda et al. 2016, thm. 1)."""
    vae = _vae()
    x = _images(40)
    opt = torch.optim.Adam(vae.parameters(), 1e-2)
    for _ in range(60):  # fit a little, so that q(z | x) is informative and the gaps show
        loss = ELBOObjective()(vae, x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(5)
    k1, k10, k200 = (vae.log_likelihood(x, k, g).mean() for k in (1, 10, 200))
    assert k1 < k10 < k200


def test_bits_per_dim():
    vae = _vae()
    nats = torch.tensor([-784 * math.log(2)])  # one bit per pixel
    assert vae.bits_per_dim(nats).item() == pytest.approx(1.0)
    gaussian = _vae("gaussian")  # a density on [0, 1]: + 8 bits for 256 levels
    assert gaussian.bits_per_dim(nats).item() == pytest.approx(9.0)


def test_objective_is_the_negative_elbo_per_pixel_value_with_beta():
    vae = _vae()
    x = _images()
    for beta in (0.0, 1.0, 4.0):
        torch.manual_seed(6)
        loss = ELBOObjective(beta=beta)(vae, (x, torch.zeros(len(x))))["loss"]
        torch.manual_seed(6)
        elbo = vae.elbo(x, beta)["elbo"]
        assert loss.item() == pytest.approx((-elbo.mean() / 784).item(), rel=1e-6)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        ELBOObjective(beta=-1.0)


@pytest.mark.parametrize("field, value", [("image_size", 30), ("likelihood", "laplace"),
                                          ("latent_dim", 0)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=f"ConvVAEConfig.{field}"):
        ConvVAEConfig(**{field: value})


def test_labels_are_refused():
    vae = _vae()
    with pytest.raises(ValueError, match="unconditional"):
        vae(vae.sample_latents(2), torch.zeros(2, 1, dtype=torch.long))
