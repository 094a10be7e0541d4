"""Every way a user keeps a sparsified model gives it back as it was: the same weights bit for bit, each
stage's sparsity and window score, and the same outputs (torch.equal).

The matrix: the built-in models, timm, torchvision and Hugging Face Swin V1 and V2 (tiny random configs), at
a drawn search-space config and window score and at dense, kept (a) through torch.save / torch.load
(weights_only), (b) through a safetensors file, (c) through save_pretrained / from_pretrained (Hugging Face),
and (d) loaded strictly into the plain source library's model when dense.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sparsevit_sdk import build_model, search_space, set_sparsity, sparse_backbone, sparsify
from sparsevit_sdk.config import SparsityConfig
from sparsevit_sdk.sparse import WINDOW_SCORES, set_window_score
from sparsevit_sdk.sparse.guards import STATE_KEYS

from .test_convert import TINY, TV_TINY, _randomize

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

HF = dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def _tv(v2: bool) -> nn.Module:
    from torchvision.models import swin_transformer as tv

    if not v2:
        return tv.SwinTransformer(**TV_TINY, num_classes=5)
    return tv.SwinTransformer(**{**TV_TINY, "window_size": [8, 8]}, num_classes=5, block=tv.SwinTransformerBlockV2,
                              downsample_layer=tv.PatchMergingV2)


def _hf(cls: str, **kwargs) -> nn.Module:
    v2 = cls.startswith("Swinv2")
    config = (transformers.Swinv2Config(image_size=256, window_size=8, num_labels=5, **HF, **kwargs) if v2 else
              transformers.SwinConfig(image_size=224, window_size=7, num_labels=5, **HF, **kwargs))
    return getattr(transformers, cls)(config)


def _hf_outputs(out) -> list[torch.Tensor]:
    if hasattr(out, "feature_maps"):
        return list(out.feature_maps)
    return [out.logits] if hasattr(out, "logits") else [out.last_hidden_state, out.pooler_output]


# id: (build a source model, input side, the outputs to compare); "micro" models are sparse already
SOURCES: dict[str, tuple[Callable[[], nn.Module], int, Callable]] = {
    "swin_micro": (lambda: build_model("swin_micro"), 112, lambda m, x: m(x)),
    "swinv2_micro": (lambda: build_model("swinv2_micro"), 128, lambda m, x: m(x)),
    "timm-v1": (lambda: timm.create_model("swin_tiny_patch4_window7_224", num_classes=5, **TINY), 224,
                lambda m, x: [m(x)]),
    "timm-v2": (lambda: timm.create_model("swinv2_tiny_window8_256", num_classes=5, **TINY), 256, lambda m, x: [m(x)]),
    "torchvision-v1": (lambda: _tv(False), 224, lambda m, x: [m(x)]),
    "torchvision-v2": (lambda: _tv(True), 256, lambda m, x: [m(x)]),
    **{f"hf-{cls}": ((lambda cls=cls: _hf(cls, **({"out_features": STAGES} if "Backbone" in cls else {}))),
                     256 if cls.startswith("Swinv2") else 224, lambda m, x: _hf_outputs(m(pixel_values=x)))
       for cls in ("SwinForImageClassification", "SwinModel", "SwinBackbone", "Swinv2ForImageClassification",
                   "Swinv2Model", "Swinv2Backbone")},
}
HF_SOURCES = [name for name in SOURCES if name.startswith("hf-")]
LIBRARY_SOURCES = [name for name in SOURCES if "micro" not in name]
MATRIX = [name for name in SOURCES if not name.startswith("hf-") or "ForImage" in name]  # (a), (b): one HF class each

# a searched-like state: a config drawn from the model's search space (None: dense), and a window score
STATES = st.tuples(st.none() | st.integers(0, 2**31 - 1), st.sampled_from(WINDOW_SCORES))
CHECKS = settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _source(name: str, seed: int) -> nn.Module:
    return _randomize(SOURCES[name][0](), seed).eval()


def _sparse(name: str, state: tuple[int | None, str], seed: int = 0) -> nn.Module:
    """A sparsified source in ``state``: its config drawn from its search space with that seed (None: dense)."""
    model = sparsify(_source(name, seed))
    config_seed, score = state
    space = search_space(model)
    set_sparsity(model, space.dense() if config_seed is None else space.sample(config_seed))
    return set_window_score(model, score)


def _kept_state(model: nn.Module) -> tuple[list[list[float]], list[str]]:
    backbone = sparse_backbone(model)
    return backbone.block_sparsity, [stage.window_score for stage in backbone.stages]


def _assert_same(model: nn.Module, again: nn.Module, name: str) -> None:
    """Bit-identical weights under the same keys, the same sparsity and scores, the same outputs."""
    saved, loaded = model.state_dict(), again.state_dict()
    assert list(loaded) == list(saved)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert _kept_state(again) == _kept_state(model)
    side, outputs = SOURCES[name][1:]
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected, got = outputs(model, x), outputs(again, x)
    assert len(got) == len(expected) and all(torch.equal(g, e) for g, e in zip(got, expected))


def _through_torch(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _through_safetensors(state_dict: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.safetensors")
        safetensors_torch.save_file(state_dict, path)
        return safetensors_torch.load_file(path)


@pytest.mark.parametrize("keep", [_through_torch, _through_safetensors], ids=["torch.save", "safetensors"])
@pytest.mark.parametrize("name", MATRIX)
@CHECKS
@example(state=(None, "norm"))
@example(state=(7, "deviation"))
@given(state=STATES)
def test_a_state_dict_brings_back_weights_sparsity_window_score_and_outputs(name, keep, state):
    model = _sparse(name, state)
    again = sparsify(_source(name, seed=1))  # other weights, dense: everything must come from the file
    again.load_state_dict(keep(model.state_dict()))
    _assert_same(model, again, name)


@pytest.mark.parametrize("name", HF_SOURCES)
@CHECKS
@example(state=(None, "norm"))
@example(state=(7, "deviation"))
@given(state=STATES)
def test_save_pretrained_then_sparsify_from_pretrained_brings_the_model_back(name, state):
    model = _sparse(name, state)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        plain, info = type(model).from_pretrained(tmp, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "mismatched_keys", "error_msgs"))
    # a plain Hugging Face model loads every weight; the stage state it cannot use (config.json holds it too)
    # is all it reports, and only where a stage is not fresh
    assert {k.rsplit(".", 1)[-1] for k in info["unexpected_keys"]} <= set(STATE_KEYS)
    assert bool(info["unexpected_keys"]) == (state != (None, "norm"))
    _assert_same(model, sparsify(plain.eval()), name)


@pytest.mark.parametrize("name", LIBRARY_SOURCES)
def test_the_source_library_loads_a_dense_sparsified_model_strictly(name):
    source = _source(name, seed=0)
    plain = _source(name, seed=1)
    plain.load_state_dict(sparsify(source).state_dict())  # strict: the source's keys, no more, no less
    side, outputs = SOURCES[name][1:]
    x = torch.randn(1, 3, side, side)
    with torch.inference_mode():
        assert all(torch.equal(g, e) for g, e in zip(outputs(plain, x), outputs(source, x)))
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("name", LIBRARY_SOURCES)
def test_only_a_stage_that_is_not_fresh_adds_keys_to_the_sources(name):
    source = _source(name, seed=0)
    model = sparsify(source)
    assert set(model.state_dict()) == set(source.state_dict())  # (timm V2 lists its blocks' tensors in another order)
    set_window_score(model, "deviation")
    extra = set(model.state_dict()) - set(source.state_dict())
    assert len(extra) == 4 and all(k.endswith(".window_score") for k in extra)
    assert set(source.state_dict()) <= set(model.state_dict())


@pytest.mark.parametrize("name", ["swin_micro", "hf-SwinForImageClassification", "torchvision-v1"])
def test_a_head_only_checkpoint_keeps_each_stage_as_it_is_and_a_dense_one_makes_it_dense(name):
    model = _sparse(name, (7, "deviation"))
    state = _kept_state(model)
    assert any(any(s) for s in state[0])
    head = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("head", "classifier", "norm")}
    assert head
    model.load_state_dict(head, strict=False)
    assert _kept_state(model) == state
    model.load_state_dict(sparsify(_source(name, seed=0)).state_dict())
    assert _kept_state(model) == ([[0.0, 0.0]] * 4, ["norm"] * 4)


@pytest.mark.parametrize("name", ["swin_micro", "timm-v1", "hf-Swinv2ForImageClassification"])
def test_a_checkpoint_sparsity_set_sparsity_would_refuse_is_refused_by_key(name):
    model = _sparse(name, (None, "norm"))
    saved = model.state_dict()
    first_block = next(k for k in saved if ".blocks.0." in k)
    key = first_block.split("blocks.")[0] + "sparsity"
    saved[key] = torch.tensor([0.9, 0.37], dtype=torch.float64)  # keep ratios stored as sparsity, say
    with pytest.raises(RuntimeError, match=rf"{key}: sparsity \[0.9, 0.37\] decreases along the stage.*"
                                           r"store 1 - kept.*sparsity_monotonic to False"):
        model.load_state_dict(saved)
    assert _kept_state(model)[0][0] == [0.0, 0.0]
    saved[key] = torch.tensor([0.3, 1.5], dtype=torch.float64)
    with pytest.raises(RuntimeError, match=rf"{key}\[1\]: sparsity 1.5 is outside \[0, 1\)"):
        model.load_state_dict(saved)
    saved[key] = torch.tensor([0.3, 0.37], dtype=torch.float64)  # off the grid, but a config could hold it
    model.load_state_dict(saved)
    assert _kept_state(model)[0][0] == [0.3, 0.37]


@pytest.mark.parametrize("name", ["swin_micro", "hf-SwinForImageClassification"])
def test_a_model_set_by_a_non_monotonic_config_keeps_its_decreasing_sparsity(name, tmp_path):
    model = sparsify(_source(name, seed=0))
    backbone = sparse_backbone(model)
    ratios = [0.5, 0.2] + [0.0] * (sum(backbone.depths) - 2)
    set_sparsity(model, SparsityConfig(ratios, backbone.signature, "block", monotonic=False))
    again = sparsify(_source(name, seed=1))
    again.load_state_dict(_through_safetensors(model.state_dict()))
    _assert_same(model, again, name)
    if name.startswith("hf-"):
        model.save_pretrained(tmp_path)
        _assert_same(model, sparsify(type(model).from_pretrained(tmp_path).eval()), name)


def test_a_hugging_face_checkpoint_loads_into_a_sparsified_model_and_the_source_config_stays_its_own(tmp_path):
    source, original = (_source("hf-SwinForImageClassification", seed) for seed in (0, 1))
    model = sparsify(original)
    set_sparsity(model, search_space(model).sample(3))
    set_window_score(model, "deviation")
    assert model.config.sparsevit_stages and not hasattr(original.config, "sparsevit_stages")  # its own config
    source.save_pretrained(tmp_path)
    model.load_state_dict(transformers.SwinForImageClassification.from_pretrained(tmp_path).state_dict())
    assert _kept_state(model) == ([[0.0, 0.0]] * 4, ["norm"] * 4)  # a dense checkpoint
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    assert not hasattr(model.config, "sparsevit_stages")  # a dense model's config is Hugging Face's
    set_sparsity(model, search_space(model).uniform(0.5))
    assert model.config.sparsevit_stages[0]["sparsity"] == [0.5, 0.5]


def test_a_bad_sparsity_in_config_json_is_refused_by_name(tmp_path):
    model = _sparse("hf-SwinModel", (7, "norm"))
    model.config.sparsevit_stages[1]["window_score"] = "entropy"
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"config.sparsevit_stages\[1\].window_score: unknown window score 'entropy'"):
        sparsify(transformers.SwinModel.from_pretrained(tmp_path))


def test_sparsity_trainer_save_model_then_sparsify_from_pretrained(tmp_path):
    pytest.importorskip("accelerate")
    from sparsevit_sdk.accuracy.trainer import SparsityTrainer

    from ..accuracy.test_trainer import _args, _Images

    model = _sparse("hf-SwinForImageClassification", (11, "deviation"))
    trainer = SparsityTrainer(model=model, args=_args(tmp_path, max_steps=1), train_dataset=_Images(2),
                              distill=False)
    trainer.train()
    trainer.save_model(str(tmp_path / "kept"))
    _assert_same(model, sparsify(transformers.SwinForImageClassification.from_pretrained(tmp_path / "kept")).eval(),
                 "hf-SwinForImageClassification")
