"""Registry, checkpoint format and safe loading."""

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import mmgen
from mmgen.checkpoint import UnsafeCheckpointError, atomic_path, load_state_dict, torch_save
from mmgen.registry import config_from_dict, config_to_dict


@dataclasses.dataclass
class HeadConfig:
    classes: int = 3  # output classes
    bias: bool = True  # linear bias


@dataclasses.dataclass
class ToyConfig:
    widths: tuple[int, ...] = (8, 16)  # hidden widths
    act: str = "relu"  # activation name
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)  # nested config
    dropout: float | None = None  # optional dropout


class Toy(mmgen.PretrainedModel):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        dims = (4, *config.widths)
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.body = nn.Sequential(*[nn.Linear(a, b) for a, b in pairs])
        self.norm = nn.BatchNorm1d(dims[-1])  # has buffers (running stats) to round-trip
        self.head = nn.Linear(dims[-1], config.head.classes, bias=config.head.bias)

    def forward(self, x):  # (B, 4) -> (B, classes)
        return self.head(self.norm(self.body(x)))


@mmgen.register_model("test/toy")
def toy(**overrides) -> Toy:
    return Toy(ToyConfig(**overrides))


def test_registry_lists_and_creates():
    assert "test/toy" in mmgen.list_models()
    assert mmgen.list_models("test/*") == ["test/toy"]
    assert mmgen.list_models("nothing/*") == []
    model = mmgen.create_model("test/toy", widths=(5, 6, 7))
    assert model.config.widths == (5, 6, 7) and model.model_name == "test/toy"
    with pytest.raises(KeyError, match="unknown model 'test/nope'.*test/toy"):
        mmgen.create_model("test/nope")
    with pytest.raises(ValueError, match="already registered"):
        mmgen.register_model("test/toy")(lambda: None)


def test_config_roundtrip_restores_types():
    cfg = ToyConfig(widths=(3, 9), head=HeadConfig(classes=7, bias=False), dropout=0.5)
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert data["widths"] == [3, 9]
    assert config_from_dict(ToyConfig, data) == cfg
    with pytest.raises(ValueError, match="no field"):
        config_from_dict(ToyConfig, {**data, "bogus": 1})


def test_save_load_roundtrip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = mmgen.create_model("test/toy", widths=(8, 12), head=HeadConfig(classes=5))
    model.train()(torch.randn(16, 4))  # update BatchNorm running stats
    model.eval()
    out = model.save_pretrained(tmp_path / "toy")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"] == "test/toy" and meta["mmgen_version"] == mmgen.__version__
    assert meta["config"]["head"]["classes"] == 5

    for loaded in (Toy.from_pretrained(out), mmgen.load(out), mmgen.load(str(out))):
        assert type(loaded) is Toy and loaded.config == model.config
        assert loaded.model_name == "test/toy" and not loaded.training
        ref, got = model.state_dict(), loaded.state_dict()
        assert ref.keys() == got.keys()
        assert all(torch.equal(ref[k], got[k]) for k in ref)
        x = torch.randn(3, 4)
        assert torch.equal(model(x), loaded(x))


def test_save_overwrites_existing_folder(tmp_path):
    a, b = mmgen.create_model("test/toy"), mmgen.create_model("test/toy", widths=(2,))
    a.save_pretrained(tmp_path / "m")
    b.save_pretrained(tmp_path / "m")
    assert mmgen.load(tmp_path / "m").config.widths == (2,)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporaries left behind


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a model folder nor an installed"):
        mmgen.load("no-such-model")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        mmgen.load(tmp_path)
    folder = mmgen.create_model("test/toy").save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    meta["class"] = "os.path.Whatever"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="may only name mmgen classes"):
        mmgen.load(folder)
    bigger = mmgen.create_model("test/toy", widths=(8, 99)).state_dict()
    folder = mmgen.create_model("test/toy").save_pretrained(tmp_path / "n")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in bigger.items()}, str(folder / "model.safetensors"))
    with pytest.raises(Exception, match="size mismatch|do not fit"):
        mmgen.load(folder)


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a stand-in for any code-execution gadget."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("fmt", ["raw_pickle", "torch_zip"])
def test_malicious_pickle_is_refused(tmp_path, fmt):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(2), "x": _CreatesFile(marker)}
    if fmt == "raw_pickle":
        evil.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, evil)

    with pytest.raises(UnsafeCheckpointError, match="refuses"):
        load_state_dict(evil)
    assert not marker.exists()

    # The test is meaningful: a plain unpickler *would* have created the file.
    if fmt == "raw_pickle":
        pickle.loads(evil.read_bytes()).get("x").close()
        assert marker.exists()


def test_pickle_state_dicts_load_safely(tmp_path):
    sd = {"a": torch.randn(3), "b": torch.arange(4)}
    torch.save({"state_dict": sd}, tmp_path / "w.ckpt")
    got = load_state_dict(tmp_path / "w.ckpt")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    with pytest.raises(ValueError, match="unknown weight file type"):
        (tmp_path / "w.npz").write_bytes(b"x")
        load_state_dict(tmp_path / "w.npz")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    torch_save({"v": 1}, target)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(b"half-written")
            raise RuntimeError("boom")
    assert torch.load(target, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_fp16_storage_and_info_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = mmgen.create_model("test/toy")
    model.info = {"labels": ["a", "b", "c"], "preprocess": {"size": 8}}
    folder = model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    assert stored["head.weight"].dtype == torch.float16
    assert stored["norm.num_batches_tracked"].dtype == torch.int64  # ints untouched
    loaded = mmgen.load(folder)
    assert loaded.info == model.info
    assert loaded.head.weight.dtype == torch.float32
    assert torch.equal(loaded.head.weight, model.head.weight.half().float())
