"""The built-in demo tasks, generated in code (no download): digits on a mostly empty canvas, textured
scenes where no window is empty, a small segmenter around a sparse Swin, the recipe that trains it into a
supernet, and the search's fallback proxy on the demo's images.  Kept apart from the library's accuracy
tools so that nothing a user's own model goes through depends on them.

    net = train_demo_supernet(DemoRecipe())                    # dense training, then sparsity-aware adaptation
    train_demo_supernet(DemoRecipe(task="textures"))           # the texture task
    proxy = default_proxy(model, (1, 3, 224, 224))             # label-free agreement on demo canvases
"""

from .digits import NUM_CLASSES, DemoSegmenter, DigitCanvases, build_demo_model, demo_loader, segmentation_loss
from .proxy import default_proxy, probe_images
from .recipe import TASKS, DemoRecipe, DemoSupernet, train_demo_supernet
from .textures import NUM_TEXTURES, TextureScenes, texture_loader

__all__ = [
    "NUM_CLASSES", "NUM_TEXTURES", "TASKS", "DemoRecipe", "DemoSegmenter", "DemoSupernet", "DigitCanvases",
    "TextureScenes", "build_demo_model", "default_proxy", "demo_loader", "probe_images", "segmentation_loss",
    "texture_loader", "train_demo_supernet",
]
