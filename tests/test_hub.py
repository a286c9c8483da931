"""mmgen.load: pipelines load as the class they saved, installed models are found by name,
`mmgen train --install` writes where the user says, recipes keep their shape when shortened."""

import dataclasses
import json

import pytest
import torch
from torch import nn

import mmgen
from mmgen import cli
from mmgen.diffusion.pipeline import TextToImagePipeline
from mmgen.hub import user_model_dir
from mmgen.pipeline import Pipeline
from mmgen.train import TrainConfig


@dataclasses.dataclass
class EchoConfig:
    scale: float = 2.0  # multiplies the network's output


class EchoNet(mmgen.PretrainedModel):
    config_class = EchoConfig

    def __init__(self, config: EchoConfig):
        super().__init__(config)
        self.lin = nn.Linear(3, 3)


class EchoPipeline(Pipeline):
    """A pipeline kind of its own: one network and a config."""

    components = ("net",)
    config_class = EchoConfig

    def __init__(self, net: nn.Module, config: EchoConfig, device: str = "cpu"):
        self.net, self.config, self.device = net, config, device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.config.scale * self.net.lin(x)


def test_a_pipeline_folder_loads_as_the_class_it_names(tmp_path):
    pipe = EchoPipeline(EchoNet(EchoConfig()), EchoConfig(scale=3.0))
    folder = pipe.save_pretrained(tmp_path / "echo")
    meta = json.loads((folder / "pipeline.json").read_text())
    assert meta["class"].endswith("test_hub.EchoPipeline") and meta["components"] == ["net"]
    loaded = mmgen.load(folder, device="meta-ignored")
    assert type(loaded) is EchoPipeline and loaded.config.scale == 3.0
    x = torch.randn(2, 3)
    assert torch.equal(loaded(x), pipe(x)) and loaded.device == "meta-ignored"
    with pytest.raises(ValueError, match="not a TextToImagePipeline"):
        TextToImagePipeline.from_pretrained(folder)
    meta["class"] = "subprocess.Popen"
    (folder / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="may only name mmgen classes"):
        mmgen.load(folder)


def test_installed_models_are_found_by_name_before_bundled_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path))
    assert user_model_dir() == tmp_path / "models"
    net = mmgen.create_model("cnn/lenet5", input_size=28)
    net.save_pretrained(tmp_path / "models" / "my-lenet")
    assert "my-lenet" in mmgen.list_pretrained() and "shapes-t2i" in mmgen.list_pretrained()
    loaded = mmgen.load("my-lenet").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    net.save_pretrained(tmp_path / "models" / "mnist-lenet5")  # shadows the bundled one
    assert mmgen.load("mnist-lenet5").info == {}
    with pytest.raises(FileNotFoundError):
        mmgen.load("../models/my-lenet")  # names are names, never paths


def test_train_install_goes_to_the_user_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMGEN_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert cli.main(["train", "classifier", "--steps", "4", "--batch-size", "16", "--out",
                     str(out), "--install"]) == 0
    assert (tmp_path / "home" / "models" / "run" / "model.safetensors").is_file()
    model = mmgen.load("run")
    assert model.info["recipe"] == "run" and "test/accuracy" in model.info["results"]
    custom = tmp_path / "elsewhere"
    assert cli.main(["train", "classifier", "--steps", "4", "--batch-size", "16", "--out",
                     str(out), "--resume", "--install-dir", str(custom)]) == 0
    assert (custom / "run" / "config.json").is_file()
    capsys.readouterr()


def test_train_list_shows_the_registered_recipes_only(capsys):
    # (the experiments in scripts/experiments are not registered)
    assert cli.main(["train", "--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["mnist-dcgan", "mnist-lenet5", "mnist-resnet18", "mnist-vae",
                     "photo-colorizer", "photo-colorizer-l1", "photo-colorizer-pix2pix",
                     "shapes-classifier", "shapes-clip", "shapes-clip-joint", "shapes-dcgan",
                     "shapes-dit", "shapes-t2i", "shapes-vae", "style-adain",
                     "style-fast"]


def test_with_steps_keeps_the_run_shape():
    cfg = TrainConfig(steps=6000, warmup_steps=200, ema_decay=0.999, ckpt_every=1000,
                      log_every=100)
    short = cfg.with_steps(600)
    assert (short.steps, short.warmup_steps, short.ckpt_every, short.log_every) == (
        600, 20, 100, 10)
    assert 1 / (1 - short.ema_decay) == pytest.approx(100, rel=1e-3)  # horizon / 10
    tiny = cfg.with_steps(3)
    assert tiny.ckpt_every == 1 and tiny.log_every == 1 and tiny.ema_decay == 0.0
    assert cfg.with_steps(6000) is cfg
