"""CLIP: parity with open_clip and transformers on random weights, tokenizer, preprocessing,
registry round trip and attention backends."""

import dataclasses
import json
import warnings

import open_clip
import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file

import mmgen
from mmgen.clip import (
    CLIP,
    PRESETS,
    CLIPConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionModel,
    TextConfig,
    VisionConfig,
    tokenize,
)
from mmgen.interop import KeyMapError, from_open_clip, from_transformers
from mmgen.nn import QuickGELU, set_attention_backend

TOL = 1e-4
TEXTS = ["", "a photo of a cat", "A large RED circle in the top-left, on a white background!",
         "an astronaut riding a horse on the moon, highly detailed, 8k, trending on artstation"]
SD_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                      num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                      hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                      bos_token_id=49406, eos_token_id=49407, pad_token_id=1)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def open_clip_b32():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_clip.create_model("ViT-B-32", pretrained=None).eval()


def _small_open_clip(quick_gelu: bool = True, **text) -> torch.nn.Module:
    """A small open_clip CLIP with a non-224 image size and a short text context."""
    torch.manual_seed(1)
    text_cfg = dict(context_length=20, vocab_size=49408, width=64, heads=2, layers=2, **text)
    vision_cfg = dict(image_size=48, patch_size=8, width=64, head_width=32, layers=2)
    return open_clip.CLIP(32, vision_cfg, text_cfg, quick_gelu=quick_gelu).eval()


# ----------------------------------------------------------------------------- open_clip


@torch.no_grad()
def test_open_clip_vit_b32_parity(open_clip_b32):
    model = from_open_clip(open_clip_b32)
    gelu = {"activation": "gelu"}  # open_clip's "ViT-B-32" (not "-quickgelu") uses nn.GELU
    expected = mmgen.registry.with_overrides(PRESETS["vit-b-32"],
                                             {"vision": gelu, "text": gelu})
    assert model.config == expected and not model.training
    torch.manual_seed(2)
    images = torch.randn(2, 3, 224, 224)
    with pytest.warns(UserWarning, match="1 of 5 text"):
        tokens = tokenize([*TEXTS, "many words " * 60])
    assert _max_diff(model.encode_image(images), open_clip_b32.encode_image(images)) < TOL
    assert _max_diff(model.encode_text(tokens), open_clip_b32.encode_text(tokens)) < TOL
    ours, ref = model(images, tokens[:2]), open_clip_b32(images, tokens[:2])
    for a, b in zip(ours, ref, strict=True):
        assert _max_diff(a, b) < TOL


@torch.no_grad()
def test_open_clip_vit_b32_from_file(open_clip_b32, tmp_path):
    # OpenAI-layout state dict with OpenAI's metadata entries, as a torch.save file.
    state = {**open_clip_b32.state_dict(), "input_resolution": torch.tensor(224),
             "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}
    torch.save(state, tmp_path / "vit-b-32.pt")
    model = from_open_clip(tmp_path / "vit-b-32.pt", activation="gelu")
    torch.manual_seed(3)
    images, tokens = torch.randn(2, 3, 224, 224), tokenize(TEXTS[1:3])
    assert _max_diff(model.encode_image(images), open_clip_b32.encode_image(images)) < TOL
    assert _max_diff(model.encode_text(tokens), open_clip_b32.encode_text(tokens)) < TOL


@torch.no_grad()
def test_open_clip_small_variants(tmp_path):
    ref = _small_open_clip(quick_gelu=True)
    model = from_open_clip(ref)
    vision, text = model.config.vision, model.config.text
    assert (vision.image_size, vision.heads, vision.activation) == (48, 2, "quick_gelu")
    assert (text.context_length, text.heads, model.config.embed_dim) == (20, 2, 32)
    images = torch.randn(3, 3, 48, 48)
    tokens = tokenize(TEXTS[:3], context_length=20)
    assert _max_diff(model.encode_image(images), ref.encode_image(images)) < TOL
    assert _max_diff(model.encode_text(tokens), ref.encode_text(tokens)) < TOL
    # A DDP-wrapped safetensors file in open_clip's CustomTextCLIP layout ("text." prefix).
    text_keys = ("token_embedding", "positional_embedding", "transformer", "ln_final",
                 "text_projection")
    state = {("module.text." if k.startswith(text_keys) else "module.") + k: v
             for k, v in ref.state_dict().items()}
    save_file(state, tmp_path / "small.safetensors")
    # Shapes do not reveal heads: a state dict alone gives OpenAI's width // 64 (here 1).
    assert from_open_clip(tmp_path / "small.safetensors").config.text.heads == 1
    loaded = from_open_clip(tmp_path / "small.safetensors", model.config)
    assert _max_diff(loaded.encode_text(tokens), ref.encode_text(tokens)) < TOL


@torch.no_grad()
def test_open_clip_eos_pooling_and_gelu():
    ref = _small_open_clip(quick_gelu=False, pool_type="eos", eos_id=49407)
    model = from_open_clip(ref)
    assert model.config.text.pool == "eos" and model.config.text.activation == "gelu"
    tokens = tokenize(TEXTS[:3], context_length=20)
    tokens[1, 10] = 49000  # an id above the EOT's position: argmax and eos pooling differ
    assert _max_diff(model.encode_text(tokens), ref.encode_text(tokens)) < TOL


def test_open_clip_refuses_what_it_cannot_convert(open_clip_b32, tmp_path):
    state = open_clip_b32.state_dict()
    with pytest.raises(ValueError, match="ViT CLIP state dict: no 'visual.conv1.weight'"):
        from_open_clip({k: v for k, v in state.items() if k != "visual.conv1.weight"})
    wrong = dataclasses.replace(PRESETS["vit-b-16"])
    with pytest.raises(KeyMapError, match="visual.positional_embedding"):
        from_open_clip(state, wrong)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated
        scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "openai-jit.pt"))
    with pytest.raises(ValueError, match="TorchScript archive"):
        from_open_clip(tmp_path / "openai-jit.pt")
    siglip_like = _small_open_clip()
    siglip_like.logit_bias = torch.nn.Parameter(torch.zeros(()))
    with pytest.raises(ValueError, match="logit_bias"):
        from_open_clip(siglip_like)


# ----------------------------------------------------------------------------- transformers


@torch.no_grad()
def test_transformers_sd_text_encoder(tmp_path):
    torch.manual_seed(4)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**SD_TEXT_CONFIG)).eval()
    tokens = tokenize(TEXTS[1:3])
    expected = ref(input_ids=tokens)
    ref.save_pretrained(tmp_path / "text_encoder")
    for source in (ref, tmp_path / "text_encoder"):
        model = from_transformers(source)
        assert isinstance(model, CLIPTextModel) and model.config.pool == "eos"
        out = model.encode_text_states(tokens)
        assert out.last_hidden_state.shape == (2, 77, 768)
        assert _max_diff(out.last_hidden_state, expected.last_hidden_state) < TOL
        assert _max_diff(out.pooled, expected.pooler_output) < TOL
        assert torch.equal(out.embeds, out.pooled)  # no projection


def _small_text_config(**kw) -> transformers.CLIPTextConfig:
    base = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=24, projection_dim=16)
    return transformers.CLIPTextConfig(**{**base, **kw})


@torch.no_grad()
def test_transformers_legacy_eos_and_old_key_prefix(tmp_path):
    # Stable Diffusion 1.x/2.x folders: eos_token_id=2 (pool at argmax) and, written by
    # transformers 4, keys prefixed "text_model." plus a stored position_ids buffer.
    torch.manual_seed(5)
    ref = transformers.CLIPTextModel(_small_text_config(eos_token_id=2, bos_token_id=0)).eval()
    folder = tmp_path / "text_encoder"
    ref.save_pretrained(folder)
    state = {"text_model." + k: v for k, v in ref.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(24)[None]
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    model = from_transformers(folder)
    assert model.config.pool == "argmax"
    tokens = torch.randint(0, 49406, (3, 24))  # no end-of-text: the pooling rule matters
    expected, out = ref(input_ids=tokens), model(tokens)
    assert _max_diff(out.last_hidden_state, expected.last_hidden_state) < TOL
    assert _max_diff(out.pooled, expected.pooler_output) < TOL


@torch.no_grad()
def test_transformers_models_with_projection(tmp_path):
    torch.manual_seed(6)
    text_ref = transformers.CLIPTextModelWithProjection(_small_text_config(hidden_act="gelu"))
    vision_cfg = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=256,
                                               num_hidden_layers=2, num_attention_heads=4,
                                               image_size=40, patch_size=8, projection_dim=16)
    vision_ref = transformers.CLIPVisionModelWithProjection(vision_cfg)
    vision_ref.eval().save_pretrained(tmp_path / "image_encoder")
    tokens, images = tokenize(TEXTS, context_length=24), torch.randn(2, 3, 40, 40)

    text = from_transformers(text_ref.eval())
    expected = text_ref(input_ids=tokens)
    assert _max_diff(text.encode_text(tokens), expected.text_embeds) < TOL
    assert _max_diff(text(tokens).last_hidden_state, expected.last_hidden_state) < TOL

    vision = from_transformers(tmp_path / "image_encoder")
    assert isinstance(vision, CLIPVisionModel) and vision.config.image_size == 40
    expected = vision_ref(pixel_values=images)
    out = vision(images)
    assert _max_diff(out.embeds, expected.image_embeds) < TOL
    assert _max_diff(out.last_hidden_state, expected.last_hidden_state) < TOL

    full_ref = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=text_ref.config.to_dict(), vision_config=vision_cfg.to_dict(),
        projection_dim=16)).eval()
    full = from_transformers(full_ref)
    assert isinstance(full, CLIP)
    logits = full_ref(input_ids=tokens, pixel_values=images).logits_per_image  # (2, 4)
    image, text, scale = full(images, tokens)
    assert _max_diff(scale * image @ text.t(), logits) < TOL


def test_transformers_errors(tmp_path):
    with pytest.raises(ValueError, match="hidden_act='gelu_new'"):
        from_transformers(transformers.CLIPTextModel(_small_text_config(hidden_act="gelu_new")))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_transformers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="got BertModel"):
        from_transformers(tmp_path)


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_open_clip():
    long_text = "a very long caption " * 30
    with pytest.warns(UserWarning, match="1 of 5 text"):
        ours = tokenize([*TEXTS, long_text])
    assert torch.equal(ours, open_clip.tokenize([*TEXTS, long_text]))
    assert ours.dtype == torch.long and ours.shape == (5, 77)
    assert ours[4, -1] == 49407  # truncated, end-of-text kept
    with pytest.warns(UserWarning, match="2 of 2 text.*context of 8 tokens"):
        short = CLIPTokenizer(context_length=8)([long_text, long_text])
    assert torch.equal(short, open_clip.tokenize([long_text] * 2, context_length=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # texts that fit do not warn
        one = tokenize("a photo of a cat")
    assert one.shape == (1, 77)
    padded = CLIPTokenizer(pad_token_id=49407)("a cat")
    assert (padded[0, 3:] == 49407).all() and padded[0, 0] == 49406
    assert CLIPTokenizer().decode(one[0]) == "a photo of a cat"


# ----------------------------------------------------------------------------- mmgen model


def test_registry_round_trip(tmp_path):
    assert set(mmgen.list_models("clip/*")) == {
        "clip/vit-b-32", "clip/vit-b-16", "clip/vit-l-14", "clip/tiny", "clip/text-sd15",
        "clip/shapes-tiny", "clip/shapes-tiny-color-split", "clip/shapes-tiny-robust-split"}
    torch.manual_seed(7)
    model = mmgen.create_model("clip/tiny").eval()
    assert model.model_name == "clip/tiny" and model.config.text.context_length == 32
    folder = model.save_pretrained(tmp_path / "tiny")
    loaded = mmgen.load(folder)
    assert isinstance(loaded, CLIP) and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    images, tokens = torch.randn(2, 3, 64, 64), tokenize(TEXTS[:2], context_length=32)
    with torch.no_grad():
        for a, b in zip(model(images, tokens), loaded(images, tokens), strict=True):
            assert torch.equal(a, b)
    sd = mmgen.create_model("clip/text-sd15", layers=1)
    assert isinstance(sd, CLIPTextModel) and sd.text_projection is None
    assert isinstance(sd.transformer.resblocks[0].mlp.gelu, QuickGELU)  # mmgen.nn's, OpenAI's
    assert mmgen.create_model("clip/tiny", text={"layers": 1}).config.text.layers == 1


@torch.no_grad()
def test_attention_backends_agree(monkeypatch):
    torch.manual_seed(8)
    model = mmgen.create_model("clip/tiny").eval()
    images, tokens = torch.randn(2, 3, 64, 64), tokenize(TEXTS, context_length=32)
    calls = []
    attention = mmgen.clip.transformer.attention
    monkeypatch.setattr(mmgen.clip.transformer, "attention",
                        lambda *a, **k: calls.append(1) or attention(*a, **k))
    outputs = {}
    for backend in ("math", "sdpa", "chunked"):
        set_attention_backend(backend)
        try:
            outputs[backend] = (model.encode_image(images), model.encode_text_states(tokens))
        finally:
            set_attention_backend(None)
    assert len(calls) == 3 * (4 + 4)  # every block of both towers, per backend
    for backend in ("sdpa", "chunked"):
        (image, text), (image_ref, text_ref) = outputs[backend], outputs["math"]
        assert _max_diff(image, image_ref) < 1e-5
        assert _max_diff(text.last_hidden_state, text_ref.last_hidden_state) < 1e-5


def test_preprocess_matches_open_clip():
    torch.manual_seed(9)
    pixels = (torch.rand(90, 130, 3) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    ref = open_clip.image_transform(224, is_train=False)(image)
    model = mmgen.create_model("clip/vit-b-32", vision={"layers": 1}, text={"layers": 1})
    assert torch.equal(model.preprocess(image), ref[None])
    assert torch.equal(model.preprocess([image, image])[1], ref)
    tensor = model.preprocess(torch.rand(2, 3, 300, 250))
    assert tensor.shape == (2, 3, 224, 224)
    tiny = mmgen.create_model("clip/tiny")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(tiny.preprocess(x), tiny.normalize_images(x))


def test_shapes_and_errors():
    model = mmgen.create_model("clip/tiny").eval()
    tokens = tokenize(TEXTS[:2], context_length=32)
    with torch.no_grad():
        states = model.encode_text_states(tokens[:, :10])  # shorter than the context is fine
        assert states.last_hidden_state.shape == (2, 10, 128)
        assert states.pooled.shape == (2, 128) and states.embeds.shape == (2, 128)
        assert torch.equal(model.tokenize(TEXTS[:2]), tokens)
        normed = model.encode_text(tokens, normalize=True)
        assert torch.allclose(normed.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        model.encode_image(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match="context_length is 32"):
        model.encode_text(tokenize(["a"]))
    with pytest.raises(ValueError, match="same embedding size"):
        CLIP(CLIPConfig(VisionConfig(layers=1, embed_dim=64), TextConfig(layers=1)))
    with pytest.raises(ValueError, match="activation='relu'"):
        CLIPTextModel(TextConfig(layers=1, activation="relu"))
    with pytest.raises(TypeError, match="no field"):
        mmgen.create_model("clip/tiny", text={"depth": 2})
    # The Shapes options are not fields of the OpenAI-compatible configs (mmgen.clip.shapes).
    with pytest.raises(TypeError, match=r"no field\(s\) \['color_split'\]"):
        mmgen.create_model("clip/tiny", vision={"color_split": True})
    with pytest.raises(TypeError, match=r"no field\(s\) \['kept_tokens'\]"):
        mmgen.create_model("clip/tiny", text={"kept_tokens": 3})
