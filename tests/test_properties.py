"""Property-based tests (hypothesis) of input handling.

mmgen's promise: every bad input is a clear ``ValueError`` (or a one-line CLI error with exit
code 2), never another exception type, a traceback, or silent garbage.

1. ``mmgen generate``: the model is reached if and only if the arguments are valid, every
   other outcome is a one-line usage error, and nothing is written (or allocated) before.
2. Config dataclasses: JSON round trip of every registered model's config; any JSON value
   in any (nested) field gives a well-typed config or a ``ValueError`` naming the field
   (random values, and a sweep of edge values over every field of every preset).
3. Shapes captions: ``parse(caption(a)) == a``; any text parses or is a ``ValueError``.
4. PNG generation parameters: save -> read round trip; any ``mmgen`` chunk text reads as
   well-typed parameters or is a ``ValueError``.
5. Checkpoints: a damaged ``model.safetensors`` or ``config.json`` loads (same tensor names
   and shapes) or is a ``ValueError`` naming the folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import json
import math
import os
import reprlib
import shutil
import tempfile
import tracemalloc
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

import mmgen.diffusion.pipeline  # noqa: F401 (mmgen generate imports it late: not traced)
from mmgen.checkpoint import CorruptCheckpointError
from mmgen.cli import main
from mmgen.cnn.lenet import LeNet5, LeNetConfig
from mmgen.data import shapes
from mmgen.diffusion.metadata import GenerationParams, attach, read_params, save_png
from mmgen.limits import MAX_IMAGES, MAX_PIXELS, MAX_STEPS, SEED_MAX
from mmgen.registry import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    PretrainedModel,
    config_from_dict,
    config_to_dict,
    create_model,
    list_models,
)

# ----------------------------------------------------------------------------- helpers

# No example database: the tests leave nothing in the repository; a failure prints its input.
# On CI (CI=true) the examples are the same on every run, so a red CI is reproducible; local
# runs draw new ones each time.
PROPERTY = settings(deadline=None, database=None, derandomize=bool(os.environ.get("CI")))

# Any value json.loads can return, with the awkward ones over-represented: ints beyond float
# range, nan / inf, -0.0, bools (ints in Python), empty containers.
ODD_NUMBERS = st.sampled_from([10**400, -(10**400), 2**64, -(2**63) - 1, math.nan, math.inf,
                               -math.inf, -0.0, True, False, 0, -1])
JSON_SCALARS = st.one_of(st.none(), st.integers(), ODD_NUMBERS, st.floats(), st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8,
)
# JSON nested deeper than any parser's recursion limit, and text that is no JSON at all.
DEEP_JSON = st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
NOT_JSON = st.text(max_size=30) | st.sampled_from(["", "{", "[1,", "NaN", "{'a': 1}"])


def conforms(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the annotated type ``tp``, strictly: an int is no bool, a float
    is a finite Python float, a tuple is a tuple, a dataclass has well-typed fields."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(a, value) for a in args)
    if origin is typing.Literal:
        return value in args
    if tp is typing.Any:
        return True
    if tp is type(None):
        return value is None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            return False
        hints = typing.get_type_hints(type(value))
        return all(conforms(hints[f.name], getattr(value, f.name))
                   for f in dataclasses.fields(value))
    if origin is tuple:
        if type(value) is not tuple:
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(args[0], v) for v in value)
        return len(args) == len(value) and all(map(conforms, args, value))
    if origin is dict:
        key_tp, value_tp = args or (Any, Any)
        return isinstance(value, dict) and all(conforms(key_tp, k) and conforms(value_tp, v)
                                               for k, v in value.items())
    if tp is float:
        return type(value) is float and math.isfinite(value)
    return type(value) is tp  # int (not bool), bool, str


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """``os.chdir(path)`` for the body (contextlib.chdir needs Python 3.11)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def files_under(root: Path) -> set[Path]:
    """Every file (not folder) under ``root``."""
    return {p for p in root.rglob("*") if not p.is_dir()}


# ----------------------------------------------------------------------------- 1. CLI


class ModelReached(Exception):
    """Raised by the patched ``mmgen.hub.load``: every argument check passed."""


INVALID = object()  # the meaning of an argument text that is no number of the right kind
# Each numeric option is drawn as (text, meaning): half the time a valid value, else anything
# (boundaries, far out of range, not a number at all).
NOT_A_NUMBER = st.text(alphabet="abcxyz _.,;+-", max_size=6).map(lambda t: (t, INVALID))
NOT_WHOLE = st.one_of(  # never int(): fractions, nan, inf
    st.floats(-1e6, 1e6).map(lambda x: math.floor(x) + 0.5),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e-300]),
).map(lambda x: (repr(x), INVALID))


def whole_number_arg(top: int, far: int = 2**70) -> st.SearchStrategy[tuple[str, Any]]:
    """(text, meaning) for an integer option valid in ``[1, top]``."""
    valid = st.integers(1, top) | st.sampled_from([1, top])
    edges = st.integers(-3, 3) | st.integers(top - 3, top + 3) | st.integers(-far, far)
    return (valid | edges).map(lambda n: (str(n), n)) | NOT_WHOLE | NOT_A_NUMBER


SEED_ARG = st.one_of(
    st.integers(0, SEED_MAX) | st.integers(0, 100) | st.integers(SEED_MAX - 1100, SEED_MAX),
    st.integers(SEED_MAX - 3, SEED_MAX + 3) | st.integers(-(2**70), 2**70),
).map(lambda n: (str(n), n)) | NOT_WHOLE | NOT_A_NUMBER
GUIDANCE_ARG = st.one_of(
    st.floats(0, 1e6).map(lambda x: (repr(x), x)),
    st.integers(0, 50).map(lambda n: (str(n), float(n))),
    st.floats().map(lambda x: (repr(x), x)),  # repr: "nan", "inf", "-0.0", "-1e-300", ...
    st.sampled_from([("1e400", math.inf), ("-1", -1.0)]),
    NOT_A_NUMBER,
)
PROMPTS = st.text(min_size=1, max_size=20) | st.none() | st.sampled_from(
    ["", " ", "\t\n", "\u3000", "-x", "--steps=3", "a red circle"])
SAMPLERS = st.sampled_from(["ddim", "dpm++2m", "euler", "euler_a", "ddpm", "", "nope"])
OUT_KINDS = ("cwd", "empty", "blank", "folder", "nested", "png", "PNG", "txt",
             "dir-with-suffix", "under-a-file", "png-under-a-file")
NAMES = st.text(alphabet="abzAZ09_ éßжΩ中", min_size=1, max_size=8).map(str.strip).filter(bool)


def make_out(kind: str, name: str, root: Path) -> tuple[str | None, bool]:
    """The --out text of ``kind`` under ``root`` (creating what it presupposes), and whether
    ``mmgen generate`` accepts it (a folder, or a file ending in .png)."""
    (root / "a-file").write_text("not a folder")
    (root / f"{name}.d").mkdir()
    return {
        "cwd": (None, True), "empty": ("", False), "blank": ("  ", False),
        "folder": (str(root / name), True), "nested": (str(root / name / "sub" / name), True),
        "png": (str(root / f"{name}.png"), True), "PNG": (str(root / f"{name}.PNG"), True),
        "txt": (str(root / f"{name}.txt"), False),
        "dir-with-suffix": (str(root / f"{name}.d"), True),
        "under-a-file": (str(root / "a-file" / name), False),
        "png-under-a-file": (str(root / "a-file" / f"{name}.png"), False),
    }[kind]


def arguments_valid(opts: dict[str, Any], prompt: str | None, out_ok: bool) -> bool:
    """The documented rules of ``mmgen generate`` that are checked before a model loads
    (GenerationRequest.check_limits, mmgen.limits, the prompt and --out)."""
    meaning = {k: m for k, (_, m) in opts.items()}
    if any(m is INVALID for m in meaning.values()):
        return False
    counts = [meaning.get(k) for k in ("steps", "num-images", "height", "width")]
    if any(v is not None and v < 1 for v in counts):
        return False
    steps, n, height, width = counts
    n = 1 if n is None else n
    seed, guidance = meaning.get("seed"), meaning.get("guidance")
    return all([
        steps is None or steps <= MAX_STEPS.value,
        height is None or width is None or height * width <= MAX_PIXELS.value,
        n <= MAX_IMAGES.value,
        seed is None or 0 <= seed <= SEED_MAX - (n - 1),
        guidance is None or (math.isfinite(guidance) and guidance >= 0),
        prompt is not None and prompt.strip() != "",
        out_ok,
    ])


@settings(PROPERTY, max_examples=500)
@given(
    opts=st.fixed_dictionaries({}, optional={
        "steps": whole_number_arg(int(MAX_STEPS.value)),
        # At most 10**7 images: an implementation that builds a list per image must fail
        # the memory check below, not exhaust the machine.
        "num-images": whole_number_arg(int(MAX_IMAGES.value), far=10**7),
        "height": whole_number_arg(int(math.isqrt(int(MAX_PIXELS.value)))),
        "width": whole_number_arg(int(math.isqrt(int(MAX_PIXELS.value)))),
        "seed": SEED_ARG,
        "guidance": GUIDANCE_ARG,
        "sampler": SAMPLERS.map(lambda s: (s, s)),
        "negative-prompt": st.text(max_size=10).map(lambda s: (s, s)),
    }),
    prompt=PROMPTS, out_kind=st.sampled_from(OUT_KINDS), name=NAMES, overwrite=st.booleans(),
)
# Far too many images is refused at once, without building anything per image.
@example(opts={"num-images": ("10000000", 10**7)}, prompt="x", out_kind="folder", name="a",
         overwrite=False)
def test_generate_reaches_the_model_iff_arguments_are_valid(opts, prompt, out_kind, name,
                                                            overwrite):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out, out_ok = make_out(out_kind, name, root)
        before = files_under(root)
        argv = ["generate", *(f"--{k}={text}" for k, (text, _) in opts.items())]
        argv += [f"--out={out}"] * (out is not None) + ["--overwrite"] * overwrite
        argv += ["--", prompt] if prompt is not None else []
        stderr, code, reached = io.StringIO(), None, False
        with mock.patch("mmgen.hub.load", side_effect=ModelReached), working_directory(root), \
                contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            tracemalloc.start()
            try:
                code = main(argv)
            except ModelReached:
                reached = True
            except SystemExit as e:  # argparse's usage errors
                code = e.code
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        assert files_under(root) == before, "files written before generation"
    # Checking arguments needs no memory to speak of (typically < 0.5 MB).
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB allocated checking {argv}"
    event("model reached" if reached else f"exit {code}")
    assert reached == arguments_valid(opts, prompt, out_ok), (argv, stderr.getvalue())
    if not reached:
        lines = stderr.getvalue().splitlines()
        assert code == 2 and len(lines) == 1, (argv, code, lines)
        assert lines[0].startswith("mmgen generate: error: "), lines


# ----------------------------------------------------------------------------- 2. configs

MODEL_NAMES = list_models()


@functools.cache
def model_config(name: str) -> Any:
    """The config of registered model ``name`` (built on the meta device: nothing allocated)."""
    with torch.device("meta"):
        return create_model(name).config


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trip(name):
    config = model_config(name)
    data = config_to_dict(config)
    assert config_from_dict(type(config), data) == config
    assert conforms(type(config), config_from_dict(type(config), data))


def field_paths(cls: type, data: dict, prefix: tuple = ()) -> Iterator[tuple]:
    """The path (keys and list indices) of every field of config dict ``data`` of dataclass
    ``cls``: nested config fields and tuple items included."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        path = (*prefix, key)
        yield path
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            yield from field_paths(hints[key], value, path)
        elif isinstance(value, list):
            yield from ((*path, i) for i in range(len(value)))


def replaced(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def check_field_value(cls: type, original: dict, path: tuple, value: Any) -> str:
    """``config_from_dict`` of ``original`` with the field at ``path`` set to ``value``: a
    well-typed config, or a ValueError naming the field. Returns which it was."""
    try:
        result = config_from_dict(cls, replaced(original, path, value))
    except ValueError as e:
        names = [k for k in path if isinstance(k, str)]  # the field; its items are named by it
        field = ".".join([cls.__name__, *names])
        owner = ".".join([cls.__name__, *names[:-1]])
        message = str(e)
        # A type error names the field ("CLIPConfig.text.width: expected int, ..."); a
        # config's own check starts with its config and names the field ("UNetConfig: ...
        # heads ...", "UNetConfig.heads needs ... from block_out_channels=...").
        assert field in message or (names and message.startswith(owner)
                                    and names[-1] in message), \
            f"the error does not name {field}: {message}"
        return "ValueError"
    assert conforms(cls, result), result
    return "config"


# Every field of every registered config gets each of these (a deterministic sweep).
EDGE_VALUES = [None, True, 0, -1, 2**64, 10**400, -(10**400), 0.5, math.nan, math.inf, "x",
               [], [0], {}]
CONFIG_CLASSES = sorted({type(model_config(n)).__name__ for n in MODEL_NAMES})


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
def test_config_from_dict_edge_values(config_class):
    failures = []
    for name in MODEL_NAMES:  # every preset of the class
        config = model_config(name)
        cls, original = type(config), config_to_dict(config)
        if cls.__name__ != config_class:
            continue
        for path in [(), *field_paths(cls, original)]:
            for value in EDGE_VALUES:
                try:
                    check_field_value(cls, original, path, value)
                except Exception as e:  # collected, so that every failing field is listed
                    failures.append(f"{name} {path} = {reprlib.repr(value)}: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0]}")
    assert not failures, f"{len(failures)} failures, e.g.:\n" + "\n".join(failures[:8])


# Values for a config field: any JSON, and ones of plausible types (to reach the success path
# and the configs' own checks).
FIELD_VALUES = st.one_of(
    JSON_VALUES, ODD_NUMBERS, st.integers(-2, 600), st.floats(-1, 2),
    st.lists(st.integers(-1, 600), min_size=1, max_size=5), st.lists(st.booleans(), max_size=5),
)


@settings(PROPERTY, max_examples=600)
@given(data=st.data())
def test_config_from_dict_any_field_value(data):
    config = model_config(data.draw(st.sampled_from(MODEL_NAMES), label="model"))
    cls, original = type(config), config_to_dict(config)
    path = data.draw(st.sampled_from([(), *field_paths(cls, original)]), label="path")
    event(check_field_value(cls, original, path, data.draw(FIELD_VALUES, label="value")))


# ----------------------------------------------------------------------------- 3. captions

ATTRS = st.builds(shapes.ShapeAttrs, st.sampled_from(shapes.COLORS),
                  st.sampled_from(shapes.SHAPES), st.sampled_from(shapes.SIZES),
                  st.sampled_from(shapes.POSITIONS), st.sampled_from(shapes.BACKGROUNDS))
SPACES = st.text(alphabet=" \t\n\u00a0\u3000", min_size=1, max_size=3)


@settings(PROPERTY, max_examples=200)
@given(attrs=ATTRS, data=st.data())
def test_parse_inverts_caption(attrs, data):
    text = shapes.caption(attrs)
    assert shapes.parse(text) == attrs
    # Case and runs of whitespace are ignored.
    words = [data.draw(st.sampled_from([w, w.upper(), w.capitalize()])) for w in text.split()]
    spaced = "".join(data.draw(SPACES) + w for w in words) + data.draw(SPACES)
    assert shapes.parse(spaced) == attrs


CAPTION_WORDS = sorted(set(" ".join([shapes.CANONICAL_TEMPLATE, *shapes.COLORS, *shapes.SHAPES,
                                     *shapes.SIZES, *shapes.POSITIONS,
                                     *shapes.BACKGROUNDS]).split()) - {"{", "}"})
NEAR_CAPTIONS = st.lists(st.sampled_from([*CAPTION_WORDS, "{size}", "an", "the", "x"]),
                         max_size=14).map(" ".join)


@settings(PROPERTY, max_examples=300)
@given(text=st.text() | NEAR_CAPTIONS)
def test_parse_any_text(text):
    try:
        attrs = shapes.parse(text)
    except ValueError:
        return
    assert shapes.caption(attrs) == " ".join(text.lower().split())


# ----------------------------------------------------------------------------- 4. PNG params

FINITE = st.floats(allow_nan=False, allow_infinity=False)
PARAMS = st.builds(
    GenerationParams, prompt=st.text(), negative_prompt=st.text(max_size=10),
    seed=st.integers(0, SEED_MAX), sampler=st.text(max_size=10), steps=st.integers(1, 10**6),
    guidance=FINITE, width=st.integers(1, 4096), height=st.integers(1, 4096),
    model=st.text(max_size=20), model_hash=st.text(alphabet="0123456789abcdef", max_size=10),
    mode=st.sampled_from(["txt2img", "img2img", "inpaint"]), strength=FINITE,
    guidance_rescale=FINITE,
)


def check_request(params: GenerationParams) -> None:
    """The request of any parameters passes ``check_limits`` or is a ValueError."""
    try:
        params.request().check_limits()
    except ValueError:
        pass


@settings(PROPERTY, max_examples=100)
@given(params=PARAMS)
def test_png_params_round_trip(params):
    with tempfile.TemporaryDirectory() as tmp:
        image = attach(Image.new("RGB", (2, 2)), params)
        path = save_png(image, Path(tmp) / "image.png")
        assert read_params(path) == params
    check_request(params)


@st.composite
def mutated_params(draw: Any) -> str:
    """JSON of valid parameters with one key replaced, added or removed."""
    fields = json.loads(draw(PARAMS).to_json())
    key = draw(st.sampled_from([*fields, "extra"]))
    if draw(st.booleans()):
        fields.pop(key, None)
    else:
        fields[key] = draw(ODD_NUMBERS | JSON_VALUES)
    return json.dumps(fields)


@settings(PROPERTY, max_examples=400)
@given(text=mutated_params() | JSON_VALUES.map(json.dumps) | NOT_JSON | DEEP_JSON)
@example(text="[" * 100_000)
@example(text='{"guidance": 1e400}')  # inf
@example(text='{"guidance": 1' + "0" * 400 + "}")  # an int beyond float range
def test_read_params_any_chunk_text(text):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("mmgen", text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.png"
        Image.new("RGB", (2, 2)).save(path, pnginfo=info)
        try:
            params = read_params(path)
        except ValueError:
            event("ValueError")
            return
    event("params")
    assert conforms(GenerationParams, params), params
    check_request(params)


# ----------------------------------------------------------------------------- 5. checkpoints


@pytest.fixture(scope="module")
def saved_lenet(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A LeNet-5 saved once, and its tensor shapes."""
    model = create_model("cnn/lenet5")
    folder = model.save_pretrained(tmp_path_factory.mktemp("checkpoint") / "lenet5")
    return folder, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_or_value_error(folder: Path, shapes_: dict, loader: type) -> None:
    """``loader.from_pretrained(folder)`` loads the saved architecture or is a ValueError
    naming the folder. A small MMGEN_MAX_MODEL_GB refuses configs that would allocate much."""
    with mock.patch.dict(os.environ, {"MMGEN_MAX_MODEL_GB": "0.01"}):
        try:
            model = loader.from_pretrained(folder)
        except ValueError as e:  # CorruptCheckpointError and LimitError are ValueErrors
            event("ValueError")
            assert str(folder) in str(e), f"{type(e).__name__} does not name {folder}: {e}"
            return
    event("loaded")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes_


LOADERS = st.sampled_from([PretrainedModel, LeNet5])  # mmgen.load uses the first
HEADER_BYTES = st.binary(min_size=1, max_size=12) | st.text(
    alphabet='0123456789[]{}",:FIU8 ', min_size=1, max_size=6).map(str.encode)


@settings(PROPERTY, max_examples=250)
@given(data=st.data(), loader=LOADERS)
def test_damaged_weights(saved_lenet, data, loader):
    folder, shapes_ = saved_lenet
    blob = (folder / WEIGHTS_NAME).read_bytes()
    header_end = 8 + int.from_bytes(blob[:8], "little")
    kind = data.draw(st.sampled_from(["truncate", "header", "data", "append"]), label="kind")
    if kind == "truncate":
        damaged = blob[:data.draw(st.integers(0, len(blob) - 1), label="length")]
    elif kind == "append":
        damaged = blob + data.draw(st.binary(min_size=1, max_size=64), label="garbage")
    else:
        low, high = (0, header_end) if kind == "header" else (header_end, len(blob))
        start = data.draw(st.integers(low, high - 1), label="start")
        junk = data.draw(HEADER_BYTES if kind == "header" else st.binary(min_size=1),
                         label="junk")[:len(blob) - start]
        damaged = blob[:start] + junk + blob[start + len(junk):]
    with tempfile.TemporaryDirectory() as tmp:
        copied = Path(shutil.copytree(folder, Path(tmp) / "model"))
        (copied / WEIGHTS_NAME).write_bytes(damaged)
        if kind != "truncate":
            load_or_value_error(copied, shapes_, loader)
            return
        with pytest.raises(CorruptCheckpointError, match="truncated or damaged") as error:
            loader.from_pretrained(copied)
        assert str(copied) in str(error.value)


CLASS_NAMES = st.sampled_from([
    "mmgen.cnn.lenet.LeNet5", "mmgen.cnn.resnet.ResNet", "mmgen.registry.PretrainedModel",
    "mmgen.registry.Loadable", "mmgen.nope.Model", "mmgen.", "os.system", "", "LeNet5",
])
META_KEYS = st.sampled_from(["model", "class", "config", "info", "mmgen_version", "extra"])
LENET_FIELDS = st.sampled_from([*(f.name for f in dataclasses.fields(LeNetConfig)), "extra"])
# What is done to config.json: (what, key, value).
CONFIG_DAMAGE = st.one_of(
    st.tuples(st.just("file"), st.none(), JSON_VALUES.map(json.dumps) | NOT_JSON | DEEP_JSON),
    st.tuples(st.just("entry"), META_KEYS, ODD_NUMBERS | JSON_VALUES),
    st.tuples(st.just("entry"), st.just("class"), CLASS_NAMES),
    st.tuples(st.just("config-field"), LENET_FIELDS, ODD_NUMBERS | JSON_VALUES),
    st.tuples(st.sampled_from(["deleted", "deleted-field"]), META_KEYS | LENET_FIELDS, st.none()),
)


def damaged_config(meta: dict, damage: tuple) -> str:
    """The text of config.json ``meta`` after ``damage`` (one of CONFIG_DAMAGE)."""
    what, key, value = damage
    if what == "file":
        return value
    meta = copy.deepcopy(meta)
    node = meta["config"] if what in ("config-field", "deleted-field") else meta
    if what.startswith("deleted"):
        node.pop(key, None)
    else:
        node[key] = value
    return json.dumps(meta)


@settings(PROPERTY, max_examples=300)
@given(damage=CONFIG_DAMAGE, loader=LOADERS)
@example(damage=("file", None, "[" * 100_000), loader=PretrainedModel)
@example(damage=("entry", "class", "mmgen.registry.PretrainedModel"), loader=PretrainedModel)
@example(damage=("entry", "class", "mmgen.cnn.resnet.ResNet"), loader=LeNet5)
@example(damage=("entry", "class", "mmgen.nope.Model"), loader=PretrainedModel)
@example(damage=("config-field", "dropout", 10**400), loader=PretrainedModel)
def test_damaged_config(saved_lenet, damage, loader):
    folder, shapes_ = saved_lenet
    text = damaged_config(json.loads((folder / CONFIG_NAME).read_text()), damage)
    with tempfile.TemporaryDirectory() as tmp:
        copied = Path(shutil.copytree(folder, Path(tmp) / "model"))
        (copied / CONFIG_NAME).write_text(text)
        load_or_value_error(copied, shapes_, loader)
