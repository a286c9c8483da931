"""mmgen.metrics checked against torchmetrics, brute-force references and analytic cases."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.neighbors import NearestNeighbors
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

from mmgen.checkpoint import save_state_dict
from mmgen.interop import KeyMapError
from mmgen.metrics import (
    InceptionExtractor,
    MetricResult,
    ReferenceStats,
    clip_score,
    clip_score_from_embeddings,
    compute_fid,
    compute_inception_score,
    default_cache_dir,
    extract_features,
    feature_statistics,
    fid,
    frechet_distance,
    inception_score,
    kid,
    knn_radii,
    mmd2_unbiased,
    precision_recall,
    psnr,
    reference_statistics,
    ssim,
)


def _features(n, d=16, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _images(n, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _quiet_torchmetrics():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        yield


def _extractor():
    """A fixed random 'feature network': pool to 4x4, flatten, project to 8 features."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 8))


# --- results ---------------------------------------------------------------------------------


def test_result_str_names_the_sample_count():
    assert str(MetricResult("FID", 12.3412, n=1000)) == "FID@1000 = 12.34"
    assert str(MetricResult("KID", 0.01234, n=1000, std=0.00111)) == "KID@1000 = 0.0123 ± 0.0011"
    assert float(MetricResult("IS", 2.5, n=10)) == 2.5
    real, fake = _features(60), _features(50, seed=1)
    for result in (fid(real, fake), kid(real, fake, subsets=2, subset_size=20),
                   *precision_recall(real, fake)):
        assert str(result).startswith(f"{result.name}@50 = ")
        assert (result.n, result.n_ref) == (50, 60)


# --- KID -------------------------------------------------------------------------------------


def test_kid_matches_torchmetrics_on_the_same_subsets():
    real, fake = _features(120), _features(100, shift=0.3, seed=1) * 1.2
    reference = KernelInceptionDistance(feature=nn.Identity(), subsets=6, subset_size=50)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    torch.manual_seed(7)  # torchmetrics draws subsets from the global RNG; we use seed=7
    ref_mean, ref_std = reference.compute()
    ours = kid(real, fake, subsets=6, subset_size=50, seed=7)
    assert ours.value == pytest.approx(ref_mean.item(), rel=1e-4)
    assert ours.std == pytest.approx(ref_std.item(), rel=1e-4)


def test_kid_with_one_full_subset_is_the_mmd_of_the_sets():
    real, fake = _features(80, d=32), _features(80, d=32, shift=0.5, seed=2)
    ours = kid(real, fake, subsets=1, subset_size=80)
    assert ours.value == pytest.approx(poly_mmd(real, fake).item(), rel=1e-4)
    assert ours.std == 0
    assert mmd2_unbiased(real, fake) == pytest.approx(ours.value, rel=1e-12)
    # Same distribution: unbiased MMD² is near 0 (may be negative); shifted: clearly positive.
    assert abs(kid(real, _features(80, d=32, seed=3), subsets=1, subset_size=80).value) < 0.05
    assert ours.value > 0.1


def test_kid_errors_are_specific():
    real, fake = _features(30), _features(30, seed=1)
    with pytest.raises(ValueError, match=r"subset_size=50 is larger than the real set \(30"):
        kid(real, fake, subset_size=50)
    with pytest.raises(ValueError, match="dimension 16 but fake features 8"):
        kid(real, _features(30, d=8), subset_size=10)
    with pytest.raises(ValueError, match="keep_features=True"):
        kid(ReferenceStats.from_features(real), fake, subset_size=10)


# --- PSNR / SSIM -----------------------------------------------------------------------------


def _blur(x):
    kernel = torch.ones(3, 1, 5, 5) / 25
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=3)


def _image_pairs():
    a, b = _images(4, 32), _images(4, 32, seed=1)
    noisy = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2)))
    return [(a, b), (_blur(a), a), (noisy.clamp(0, 1), a)]


def test_psnr_matches_torchmetrics_and_the_formula():
    for preds, target in _image_pairs():
        ref = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none",
                                      dim=(1, 2, 3)).mean()
        assert psnr(preds, target).value == pytest.approx(ref.item(), rel=1e-6)
    target = 0.2 + 0.6 * _images(2)
    assert psnr(target + 0.1, target).value == pytest.approx(20.0, rel=1e-5)  # MSE = 0.01
    assert psnr(255 * (target + 0.1), 255 * target, data_range=255.0).value == \
        pytest.approx(20.0, rel=1e-5)


def _ssim_reference(x, y, c1=0.01**2, c2=0.03**2):
    """Wang et al. (2004), eq. 13, 11x11 Gaussian window (σ = 1.5), on reflect-padded images.

    Averaging the map over the whole image (borders by reflection) is torchmetrics' convention;
    Wang's MATLAB code and scikit-image average the valid interior only.
    """
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    w = (torch.outer(g, g) / g.sum() ** 2).expand(x.shape[1], 1, 11, 11)
    x, y = x.double(), y.double()

    def filt(z):
        return F.conv2d(F.pad(z, (5, 5, 5, 5), mode="reflect"), w, groups=x.shape[1])

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean().item()


def test_ssim_matches_torchmetrics_and_the_paper_formula():
    for preds, target in _image_pairs():
        ref = structural_similarity_index_measure(preds, target, data_range=1.0)
        ours = ssim(preds, target)
        assert ours.value == pytest.approx(ref.item(), rel=1e-5)
        # float32 (torchmetrics) against float64 (reference): compare absolutely.
        assert ours.value == pytest.approx(_ssim_reference(preds, target), abs=1e-5)
        assert ours.n == 4
    a = _images(2, 16)
    assert ssim(a, a).value == pytest.approx(1.0, abs=1e-6)


def test_paired_metrics_reject_bad_input():
    a = _images(2, 16)
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, a[:, :2])
    with pytest.raises(ValueError, match=r"outside \[0, 1.0\]"):
        psnr(2 * a - 1, a)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[..., :8, :8], a[..., :8, :8])


# --- feature extraction and FID ----------------------------------------------------------------


def test_image_checks_name_the_problem():
    ext = _extractor()
    with pytest.raises(ValueError, match="expected 3 channels"):
        extract_features(torch.rand(2, 1, 8, 8), ext, progress=False)
    with pytest.raises(ValueError, match=r"map \[-1, 1\] images with \(x \+ 1\) / 2"):
        extract_features(torch.rand(2, 3, 8, 8) * 2 - 1, ext, progress=False)
    with pytest.raises(ValueError, match=r"return features of shape \(2, D\)"):
        extract_features(torch.rand(2, 3, 8, 8), nn.Identity(), progress=False)
    images = _images(3)
    as_uint8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(extract_features(as_uint8, ext, progress=False),
                               ext(as_uint8.float() / 255))


def test_extract_features_accepts_tensor_pil_and_loader_in_eval_mode():
    ext, images = _extractor().train(), _images(10)
    expected = ext.eval()(images).detach()
    ext.train()
    pil = [Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy()) for im in images]
    quantised = torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in pil]) / 255
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(10)),
                                         batch_size=4)
    torch.testing.assert_close(extract_features(images, ext, batch_size=3), expected)
    torch.testing.assert_close(extract_features(loader, ext, progress=False), expected)
    torch.testing.assert_close(extract_features(pil, ext, batch_size=4, progress=False),
                               ext.eval()(quantised).detach())
    assert ext.training is False
    ext.train()
    extract_features(images, ext, progress=False)
    assert ext.training  # the caller's mode is restored


def test_fid_end_to_end_equals_frechet_distance_of_the_statistics():
    ext = _extractor()
    real, fake = _images(40), _images(30, seed=1) ** 2
    ours = compute_fid(real, fake, ext, batch_size=16, progress=False)
    with torch.no_grad():
        (m1, s1), (m2, s2) = feature_statistics(ext(real)), feature_statistics(ext(fake))
    assert ours.value == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=1e-6)
    assert (ours.name, ours.n, ours.n_ref) == ("FID", 30, 40)
    assert ours.value > 1e-3
    assert compute_fid(real, real, ext, progress=False).value == pytest.approx(0, abs=1e-6)
    stats = ReferenceStats.from_features(extract_features(real, ext, progress=False))
    from_stats = compute_fid(stats, fake, ext, progress=False)
    assert from_stats.value == pytest.approx(ours.value, rel=1e-6)
    with pytest.raises(ValueError, match="dimension 16 but fake features 8"):
        fid(_features(10), _features(10, d=8))
    with pytest.raises(ValueError, match="at least 2"):
        fid(_features(10), _features(1))


# --- Inception Score -------------------------------------------------------------------------


def test_inception_score_analytic_cases():
    uniform = inception_score(torch.zeros(100, 10), splits=5)
    assert uniform.value == pytest.approx(1.0) and uniform.std == pytest.approx(0.0)
    # Confident and evenly spread over 10 classes (each split of 20 holds every class twice).
    confident = 100.0 * F.one_hot(torch.arange(100) % 10, 10).double()
    assert inception_score(confident, splits=5).value == pytest.approx(10.0, rel=1e-6)
    # Confident but all one class: no diversity, score 1.
    assert inception_score(confident[::10], splits=1).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="splits <= N"):
        inception_score(torch.zeros(3, 10), splits=5)


def test_inception_score_matches_torchmetrics():
    logits = 3 * _features(200, d=10)
    reference = InceptionScore(feature=nn.Identity(), splits=4)
    reference.update(logits)
    torch.manual_seed(1)
    ref_mean, ref_std = reference.compute()
    torch.manual_seed(1)
    ours = inception_score(logits[torch.randperm(200)], splits=4)  # the same shuffle
    assert ours.value == pytest.approx(ref_mean.item(), rel=1e-6)
    # torchmetrics reports the sample std; we report the population std of the original code.
    assert ours.std * math.sqrt(4 / 3) == pytest.approx(ref_std.item(), rel=1e-6)


def test_compute_inception_score_runs_the_classifier():
    ext = _extractor()
    images = _images(20)
    with torch.no_grad():
        expected = inception_score(ext(images), splits=2)
    ours = compute_inception_score(images, ext, splits=2, batch_size=6, progress=False)
    assert ours.value == pytest.approx(expected.value, rel=1e-6) and ours.n == 20


# --- precision / recall ----------------------------------------------------------------------


def _precision_recall_reference(real, fake, k):
    """Kynkäänniemi et al. (2019) by brute force with numpy."""
    real, fake = real.numpy(), fake.numpy()

    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def covered(points, centers):
        d = np.linalg.norm(points[:, None] - centers[None], axis=-1)
        return (d <= radii(centers)[None]).any(axis=1).mean()

    return covered(fake, real), covered(real, fake)


def test_precision_recall_analytic_cases():
    real = _features(50)
    precision, recall = precision_recall(real, real.clone())
    assert (precision.value, recall.value) == (1.0, 1.0)
    precision, recall = precision_recall(real, _features(40, shift=100.0, seed=1))
    assert (precision.value, recall.value) == (0.0, 0.0)
    assert str(precision).startswith("precision@40")


def test_precision_recall_matches_brute_force_and_sklearn_radii():
    real, fake = _features(70, d=4), _features(60, d=4, shift=0.7, seed=1) * 0.6
    for k in (1, 3, 5):
        precision, recall = precision_recall(real, fake, k=k)
        ref_p, ref_r = _precision_recall_reference(real, fake, k)
        assert (precision.value, recall.value) == pytest.approx((ref_p, ref_r))
        assert 0 < precision.value < 1 and 0 < recall.value < 1
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)
        torch.testing.assert_close(knn_radii(real, k).numpy(), distances[:, k])
    with pytest.raises(ValueError, match="more than 3 fake samples"):
        precision_recall(real, fake[:3])


# --- CLIP score ------------------------------------------------------------------------------


class ToyCLIP(nn.Module):
    """Image i (constant value i/10) embeds at angle θ_i; text 'deg:φ' embeds at angle φ."""

    def __init__(self, image_angles):
        super().__init__()
        self.angles = torch.tensor(image_angles, dtype=torch.float64) * math.pi / 180
        self.scale = nn.Parameter(torch.ones(()))  # gives the model a device
        self.text_calls = []

    def encode_image(self, images):
        index = (images[:, 0, 0, 0] * 10).round().long()
        theta = self.angles[index]
        return torch.stack([theta.cos(), theta.sin()], dim=1) * 3  # norms need not be 1

    def encode_text(self, texts):
        self.text_calls.append(texts)
        if isinstance(texts, torch.Tensor):  # tokenised: the angle in degrees
            phi = texts.double() * math.pi / 180
        else:
            phi = torch.tensor([float(t.split(":")[1]) for t in texts]) * math.pi / 180
        return torch.stack([phi.cos(), phi.sin()], dim=1)


def test_clip_score_with_known_cosines():
    # Pair cosines 1, 0.5, 0, -1  ->  100 * max(cos, 0) = 100, 50, 0, 0  ->  mean 37.5.
    model = ToyCLIP([0, 0, 30, 90])
    images = torch.arange(4).double().div(10).view(4, 1, 1, 1).expand(4, 3, 8, 8).float()
    texts = ["deg:0", "deg:60", "deg:120", "deg:270"]
    result = clip_score(images, texts, model, batch_size=3, progress=False)
    assert result.value == pytest.approx(37.5) and result.n == 4
    assert model.text_calls == [texts[:3], texts[3:]]

    def tokenizer(batch):
        return torch.tensor([int(t.split(":")[1]) for t in batch])

    tokenised = clip_score(images, texts, model, tokenizer=tokenizer, progress=False)
    assert tokenised.value == pytest.approx(37.5)
    with pytest.raises(ValueError, match="4 images but 5 texts"):
        clip_score(images, [*texts, "deg:0"], model, progress=False)
    with pytest.raises(ValueError, match="both be \\(N, D\\)"):
        clip_score_from_embeddings(torch.ones(3, 2), torch.ones(2, 2))


# --- cached reference statistics -------------------------------------------------------------


def test_reference_statistics_are_computed_once_and_reused(tmp_path):
    feats = _features(30, d=5)
    calls = []

    def compute():
        calls.append(1)
        return feats

    key = ReferenceStats.cache_key("cifar10", "train", 32, "toy", 30)
    first = reference_statistics(key, compute, cache_dir=tmp_path)
    second = reference_statistics(key, compute, cache_dir=tmp_path)
    assert len(calls) == 1
    mu, sigma = feature_statistics(feats)
    np.testing.assert_allclose(second.mu, mu)
    np.testing.assert_allclose(second.sigma, sigma)
    assert second.n == first.n == 30 and second.features is None
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.safetensors"]  # no temp files left
    # Asking for the features (KID, precision/recall) recomputes once and stores them.
    with_features = reference_statistics(key, compute, cache_dir=tmp_path, keep_features=True)
    again = reference_statistics(key, compute, cache_dir=tmp_path, keep_features=True)
    assert len(calls) == 2
    np.testing.assert_allclose(again.features, feats.numpy().astype(np.float32))
    assert kid(with_features, feats, subsets=1, subset_size=30).n_ref == 30


def test_cache_keys_differ_by_every_field_and_the_dir_follows_the_environment(monkeypatch):
    base = ("cifar10", "train", 32, "inception_v3-pt", 50000)
    keys = {ReferenceStats.cache_key(*base)}
    for i, other in enumerate(("ffhq", "test", 64, "clip", 10000)):
        keys.add(ReferenceStats.cache_key(*base[:i], other, *base[i + 1:]))
    keys.add(ReferenceStats.cache_key("a/b", "train", 32, "x", 1))
    keys.add(ReferenceStats.cache_key("a_b", "train", 32, "x", 1))  # same after sanitising
    assert len(keys) == 8
    assert ReferenceStats.cache_key(*base).startswith("cifar10-train-32px-inception_v3-pt-n50000")
    monkeypatch.setenv("MMGEN_CACHE", "/somewhere")
    assert str(default_cache_dir()) == "/somewhere/stats"
    monkeypatch.delenv("MMGEN_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "mmgen", "stats")
    with pytest.raises(ValueError, match="invalid cache key"):
        reference_statistics("../escape", lambda: _features(3))


# --- Inception-v3 loader ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_net():
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    return inception_v3(weights=None, aux_logits=True, init_weights=False).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_inception_extractor_loads_a_local_torchvision_state_dict(inception_net, tmp_path,
                                                                  suffix):
    path = tmp_path / f"inception{suffix}"
    if suffix == ".safetensors":
        save_state_dict(inception_net.state_dict(), path)
    else:
        torch.save(inception_net.state_dict(), path)
    extractor = InceptionExtractor.from_file(path)
    assert extractor.name == "inception_v3-inception"
    images = _images(2, 32)
    features = extractor(images)
    assert features.shape == (2, 2048)
    # Reference: torchvision's own network, pool3 captured with a hook, on 299² inputs in [-1, 1].
    pooled = {}
    hook = inception_net.avgpool.register_forward_hook(lambda m, i, o: pooled.update(x=o))
    with torch.no_grad():
        logits = inception_net(2 * F.interpolate(images, size=(299, 299), mode="bilinear") - 1)
    hook.remove()
    torch.testing.assert_close(features, pooled["x"].flatten(1))
    torch.testing.assert_close(extractor.logits(images), logits)


def test_inception_extractor_other_checkpoints(inception_net, tmp_path):
    state = {k: v for k, v in inception_net.state_dict().items()
             if not k.startswith(("fc.", "AuxLogits."))}
    save_state_dict(state, tmp_path / "features_only.safetensors")
    extractor = InceptionExtractor.from_file(tmp_path / "features_only.safetensors")
    assert extractor(_images(1, 32)).shape == (1, 2048)
    with pytest.raises(ValueError, match="without its classifier"):
        extractor.logits(_images(1, 32))
    fid_graph = {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    save_state_dict(fid_graph, tmp_path / "pt_inception.safetensors")
    with pytest.warns(UserWarning, match="TF FID Inception weights"):
        InceptionExtractor.from_file(tmp_path / "pt_inception.safetensors")
    state["Mixed_7c.extra.weight"] = torch.zeros(1)
    save_state_dict(state, tmp_path / "bad.safetensors")
    with pytest.raises(KeyMapError, match="unexpected"):
        InceptionExtractor.from_file(tmp_path / "bad.safetensors")


def test_inception_extractor_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionExtractor.from_file(tmp_path / "nope.pth")
