"""demo/textures.py: the texture task, where no window is empty: shapes, determinism, every window
labelled, and a short training run that beats chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsevit_sdk import search_space
from sparsevit_sdk.accuracy import AccuracyProxy, MeanIoU, finetune
from sparsevit_sdk.demo import build_demo_model, segmentation_loss
from sparsevit_sdk.demo.recipe import DemoRecipe
from sparsevit_sdk.demo.textures import NUM_TEXTURES, TextureScenes, texture_loader

WINDOW_PX = 28  # a 7x7-token window at swin_micro's patch size 4


def test_items_are_standardised_images_and_full_masks():
    image, mask = TextureScenes("val", 2, size=(112, 84))[1]
    assert image.shape == (3, 112, 84) and image.dtype == torch.float32
    assert mask.shape == (112, 84) and mask.dtype == torch.int64
    assert 0 <= int(mask.min()) and int(mask.max()) < NUM_TEXTURES
    assert abs(float(image.mean())) < 0.5 and 0.5 < float(image.std()) < 2.0


def test_generation_is_a_function_of_seed_split_and_index():
    a, b = TextureScenes("train", 4, size=64, seed=3), TextureScenes("train", 4, size=64, seed=3)
    for i in (3, 0):  # any order
        assert all(np.array_equal(x, y) for x, y in zip(a.generate(i), b.generate(i)))
    assert not np.array_equal(a.generate(0)[0], TextureScenes("val", 4, size=64, seed=3).generate(0)[0])
    assert not np.array_equal(a.generate(0)[0], TextureScenes("train", 4, size=64, seed=4).generate(0)[0])


def test_no_window_is_empty():
    """Every 28x28-pixel window of every image is labelled throughout with texture classes (there is no
    background to drop), and the windows of the set together hold every class, many of them two or more."""
    scenes = TextureScenes("test", 16, size=224)
    classes, mixed, windows = set(), 0, 0
    for i in range(len(scenes)):
        _, mask = scenes.generate(i)
        tiles = mask.reshape(8, WINDOW_PX, 8, WINDOW_PX).transpose(0, 2, 1, 3).reshape(64, -1)  # (windows, px)
        assert ((tiles >= 0) & (tiles < NUM_TEXTURES)).all()
        kinds = [set(np.unique(t)) for t in tiles]
        classes.update(*kinds)
        mixed += sum(len(k) >= 2 for k in kinds)
        windows += len(kinds)
    assert classes == set(range(NUM_TEXTURES)) and mixed / windows > 0.2


def test_the_recipe_draws_the_task_and_keeps_the_digit_keys():
    recipe = DemoRecipe(task="textures", size=64)
    x, y = next(iter(recipe.loader("val", 2, batch_size=2)))
    assert x.shape == (2, 3, 64, 64) and int(y.max()) < NUM_TEXTURES == recipe.num_classes
    assert DemoRecipe().key() != DemoRecipe(task="textures").key()
    with pytest.raises(ValueError, match="unknown task 'scenes'; choose one of digits, textures"):
        DemoRecipe(task="scenes")


def test_a_short_training_run_beats_chance():
    """60 steps on 64 px scenes (about 10 s on one thread) lift val mIoU far above always answering one texture."""
    model = build_demo_model(num_classes=NUM_TEXTURES, seed=0)
    val = AccuracyProxy(model, texture_loader("val", 16, batch_size=8, size=64), metric=MeanIoU(NUM_TEXTURES))
    dense = search_space(model).dense()
    before = val(dense)
    finetune(model, texture_loader("train", 10_000, batch_size=8, size=64), segmentation_loss, 60, progress=False)
    val.cache_clear()
    after = val(dense)
    assert after > max(before, val.chance()) + 0.3, (before, after, val.chance())
