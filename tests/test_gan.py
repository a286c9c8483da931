"""DCGAN (mmgen.gan): the paper's architecture guidelines, pytorch/examples' checkpoint layout,
conditioning, the adversarial losses checked against their definitions, and the training
monitor (mmgen.metrics.monitor)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.gan import DCGAN, DCGANConfig
from mmgen.gan.objective import GANObjective, gradient_penalty
from mmgen.interop import load_dcgan_checkpoint

# pytorch/examples dcgan/main.py at nz=100, ngf=ndf=64, nc=3: every parameter tensor of netG
# and netD with its shape (batch-norm buffers follow their weights)
EXAMPLES_NETG = {
    "main.0.weight": (100, 512, 4, 4), "main.1.weight": (512,), "main.1.bias": (512,),
    "main.3.weight": (512, 256, 4, 4), "main.4.weight": (256,), "main.4.bias": (256,),
    "main.6.weight": (256, 128, 4, 4), "main.7.weight": (128,), "main.7.bias": (128,),
    "main.9.weight": (128, 64, 4, 4), "main.10.weight": (64,), "main.10.bias": (64,),
    "main.12.weight": (64, 3, 4, 4),
}
EXAMPLES_NETD = {
    "main.0.weight": (64, 3, 4, 4),
    "main.2.weight": (128, 64, 4, 4), "main.3.weight": (128,), "main.3.bias": (128,),
    "main.5.weight": (256, 128, 4, 4), "main.6.weight": (256,), "main.6.bias": (256,),
    "main.8.weight": (512, 256, 4, 4), "main.9.weight": (512,), "main.9.bias": (512,),
    "main.11.weight": (1, 512, 4, 4),
}


def _params(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.named_parameters()}


def test_64px_network_is_pytorch_examples_dcgan():
    gan = mmgen.create_model("gan/dcgan/64")
    assert _params(gan.generator) == EXAMPLES_NETG
    assert _params(gan.discriminator) == EXAMPLES_NETD


def test_examples_checkpoint_files_load_and_give_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    source = mmgen.create_model("gan/dcgan/64", latent_dim=32, width=8)
    for bn in source.modules():  # non-trivial running statistics, as a trained file has
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    torch.save(source.generator.state_dict(), tmp_path / "netG_epoch_24.pth")
    torch.save(source.discriminator.state_dict(), tmp_path / "netD_epoch_24.pth")
    gan = load_dcgan_checkpoint(tmp_path / "netG_epoch_24.pth", tmp_path / "netD_epoch_24.pth")
    assert (gan.config.latent_dim, gan.config.width, gan.config.image_size) == (32, 8, 64)
    source.eval()
    z = torch.randn(4, 32)
    torch.testing.assert_close(gan(z), source(z), rtol=0, atol=0)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(gan.discriminator(x), source.discriminator(x), rtol=0, atol=0)


def test_a_file_that_is_not_a_dcgan_generator_is_refused(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a DCGAN generator"):
        load_dcgan_checkpoint(tmp_path / "other.pth")


@pytest.mark.parametrize("size", [28, 32, 64])
def test_paper_guidelines(size):
    gan = DCGAN(DCGANConfig(image_size=size, channels=1, conditions=(10,)))
    g, d = list(gan.generator.main), list(gan.discriminator.main)
    # no pooling, no fully connected hidden layers
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear))
                   for m in gan.modules())
    # batch norm everywhere except G's output layer and D's input layer
    assert isinstance(g[-2], nn.ConvTranspose2d) and isinstance(g[-1], nn.Tanh)
    assert isinstance(d[0], nn.Conv2d) and isinstance(d[1], nn.LeakyReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g) == sum(
        isinstance(m, nn.ConvTranspose2d) for m in g) - 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d) == sum(
        isinstance(m, nn.Conv2d) for m in d) - 2  # not the input conv nor the logit conv
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))
    assert any(isinstance(m, nn.ReLU) for m in g)
    # N(0, 0.02) weights, N(1, 0.02) batch-norm scales
    convs = torch.cat([m.weight.flatten() for m in gan.modules()
                       if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(convs.std().item() - 0.02) < 0.001 and abs(convs.mean().item()) < 0.001
    scales = torch.cat([m.weight for m in gan.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 0.01
    z = gan.sample_latents(2)
    labels = torch.tensor([[3], [7]])
    x = gan(z, labels)
    assert x.shape == (2, 1, size, size) and x.abs().max() <= 1
    assert gan.discriminator(x, labels).shape == (2,)


def test_conditions_reach_both_networks():
    torch.manual_seed(0)
    gan = mmgen.create_model("gan/dcgan/tiny", conditions=(10, 3)).eval()
    z = gan.sample_latents(1).repeat(2, 1)
    a, b = torch.tensor([[1, 0], [1, 2]]), torch.tensor([[1, 0], [1, 0]])
    x = gan(z, a)
    assert not torch.equal(x[0], x[1])  # same z, different second attribute
    with torch.no_grad():  # the projection term: D's logit depends on the labels
        assert not torch.equal(gan.discriminator(x, a), gan.discriminator(x, b))


@pytest.mark.parametrize("labels, message", [
    (None, "conditional: pass labels"),
    (torch.tensor([[10], [0]]), r"labels must be in \[0, n\)"),
    (torch.tensor([[1, 2], [0, 0]]), "expected 1 label"),
])
def test_bad_labels_are_clear_errors(labels, message):
    gan = mmgen.create_model("gan/dcgan/tiny")
    with pytest.raises(ValueError, match=message):
        gan(gan.sample_latents(2), labels)


@pytest.mark.parametrize("field, value, message", [
    ("image_size", 48, "image_size must be one of"),
    ("discriminator_norm", "layer", "discriminator_norm must be one of"),
    ("conditions", (10, 1), "needs >= 2 values"),
    ("width", 0, "width must be >= 1"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        DCGANConfig(**{field: value})


def test_spectral_norm_replaces_batch_norm_in_d():
    gan = mmgen.create_model("gan/dcgan/tiny", discriminator_norm="spectral")
    d = gan.discriminator
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    x = torch.randn(3, 1, 28, 28)
    for _ in range(30):  # one power iteration per call in train mode
        d(x, torch.tensor([[0], [1], [2]]))
    for m in d.main:
        if isinstance(m, nn.Conv2d):  # the normalised weight has spectral norm ~1
            w = m.weight.flatten(1)
            assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, rel=0.02)


# ------------------------------------------------------------------------------ objective


def _batch(n=6):
    return torch.rand(n, 1, 28, 28) * 2 - 1, torch.arange(n) % 10


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "wgan-gp"])
def test_each_pass_trains_only_its_network(loss):
    torch.manual_seed(0)
    norm = "none" if loss == "wgan-gp" else "batch"
    gan = mmgen.create_model("gan/dcgan/tiny", discriminator_norm=norm)
    objective = GANObjective(loss=loss)
    objective.check_model(gan)
    out = objective(gan, _batch(), 0)
    out["loss"].backward()
    assert all(p.grad is None for p in gan.generator.parameters())  # G ran without grad
    assert all(p.grad is not None for p in gan.discriminator.parameters())
    gan.zero_grad(set_to_none=True)
    objective(gan, _batch(), 1)["loss"].backward()
    assert all(p.grad is not None for p in gan.generator.parameters())


def test_losses_follow_their_definitions():
    """With D replaced by fixed logits, each loss equals its formula."""
    class FixedD(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, x, labels=None):  # real images are positive, fakes get -0.5
            return self.scale * torch.where(x.mean(dim=(1, 2, 3)) > 2, 2.0, -0.5)

    gan = mmgen.create_model("gan/dcgan/tiny", conditions=())
    gan.discriminator = FixedD()
    real = torch.full((4, 1, 28, 28), 3.0)  # outside G's tanh range: D calls them real
    d_real, d_fake = torch.tensor(2.0), torch.tensor(-0.5)
    expect = {"non_saturating": (F.softplus(-d_real) + F.softplus(d_fake), F.softplus(-d_fake)),
              "hinge": (F.relu(1 - d_real) + F.relu(1 + d_fake), -d_fake)}
    for loss, (d_loss, g_loss) in expect.items():
        objective = GANObjective(loss=loss)
        assert objective(gan, real, 0)["loss"].item() == pytest.approx(d_loss.item())
        assert objective(gan, real, 1)["loss"].item() == pytest.approx(g_loss.item())


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has gradient w everywhere: the penalty is (|w| - 1)^2."""
    w = torch.randn(1, 2, 3, 3)

    def critic(x, labels=None):
        return (x * w).flatten(1).sum(1)

    gp = gradient_penalty(critic, torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3), None)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_wgan_gp_with_batch_norm_in_d_is_refused():
    with pytest.raises(ValueError, match="discriminator_norm='none'"):
        GANObjective(loss="wgan-gp").check_model(mmgen.create_model("gan/dcgan/tiny"))
    with pytest.raises(ValueError, match="GAN loss must be one of"):
        GANObjective(loss="lsgan")


# ------------------------------------------------------------------------------ monitor


class _ReadsTheMean(nn.Module):
    """A stand-in classifier: class = the image's mean brightness in tenths (0..9)."""

    def forward_features(self, x):
        return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)  # (B, 2)

    def head(self, features):
        return F.one_hot((features[:, 0] * 10).long().clamp(0, 9), 10).float()

    def parameters(self, recurse=True):
        yield torch.zeros(1)


class _ConstantGenerator(nn.Module):
    """Sample i is a flat image of brightness (i % 10 + 0.5) / 10 (or one value for all)."""

    def __init__(self, value=None):
        super().__init__()
        self.value = value

    def sample_latents(self, n, generator=None):
        return torch.arange(n, dtype=torch.float32)[:, None]

    def forward(self, z, labels=None):
        v = (z[:, 0] % 10 + 0.5) / 10 if self.value is None else torch.full((len(z),), self.value)
        return (v * 2 - 1)[:, None, None, None].expand(-1, 1, 8, 8)


def test_monitor_numbers():
    from mmgen.metrics.monitor import GeneratorMonitor

    real = torch.randn(50, 2)
    labels = (torch.arange(40) % 10)[:, None]
    monitor = GeneratorMonitor(_ReadsTheMean(), real, num_samples=40, labels=labels,
                               batch_size=16)
    _, spread = monitor.look(_ConstantGenerator())
    assert spread["class_entropy_bits"] == pytest.approx(math.log2(10))
    assert [spread[f"share_{c}"] for c in range(10)] == [0.1] * 10
    assert spread["largest_class_share"] == pytest.approx(0.1)
    assert spread["label_accuracy"] == 1.0
    _, collapsed = monitor.look(_ConstantGenerator(value=0.35))
    assert collapsed["class_entropy_bits"] == 0.0 and collapsed["largest_class_share"] == 1.0
    assert collapsed["share_3"] == 1.0 and collapsed["share_0"] == 0.0
    assert collapsed["label_accuracy"] == pytest.approx(0.1)
    assert spread["worst_label_accuracy"] == 1.0 and collapsed["worst_label_accuracy"] == 0.0
    assert collapsed["fid"] > spread["fid"] > 0


def test_monitor_logs_during_training_without_changing_it(tmp_path):
    from mmgen.data import MNIST
    from mmgen.metrics.monitor import GeneratorMonitor
    from mmgen.train import TrainConfig, Trainer

    def run(out, callbacks):
        torch.manual_seed(0)
        gan = mmgen.create_model("gan/dcgan/tiny")
        opts = [torch.optim.Adam(gan.discriminator.parameters(), 2e-4, betas=(0.5, 0.999)),
                torch.optim.Adam(gan.generator.parameters(), 2e-4, betas=(0.5, 0.999))]
        config = TrainConfig(steps=4, batch_size=8, out_dir=str(out), ckpt_every=0, seed=1)
        Trainer(gan, GANObjective(), MNIST("test", normalize=True), config, optimizers=opts,
                callbacks=callbacks).fit()
        return gan

    monitor = GeneratorMonitor(_ReadsTheMean(), torch.randn(30, 2), every=2, num_samples=20,
                               labels=(torch.arange(20) % 10)[:, None])
    watched, plain = run(tmp_path / "a", [monitor]), run(tmp_path / "b", [])
    for (k, a), b in zip(watched.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    rows = (tmp_path / "a" / "monitor.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "class_entropy_bits", "largest_class_share", "fid",
                                  *[f"share_{c}" for c in range(10)], "label_accuracy",
                                  "worst_label_accuracy"]
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == [
        "step_00000002.png", "step_00000004.png"]
    assert (tmp_path / "a" / "monitor.png").is_file()
