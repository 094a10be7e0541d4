"""Accuracy side of the search: sparsity-aware adaptation, cached accuracy proxies, a demo task.

    net = train_demo_supernet(DemoRecipe())      # or, step by step:
    model = build_demo_model("swin_micro")
    finetune(model, demo_loader("train", 4000), segmentation_loss, steps=400)   # dense
    adapt(model, demo_loader("train", 4000), segmentation_loss, steps=240, distill=True)   # supernet
    proxy = AccuracyProxy(model, demo_loader("val", 64), metric=MeanIoU(NUM_CLASSES))
    proxy(search_space(model).uniform(0.5))                                     # -> mIoU
    SplitProxy(proxy, parts=4, executor=RayExecutor())   # the same mIoU, each config scored by 4 workers
    train_demo_supernet(DemoRecipe(task="textures"))     # the texture task, where no window is empty
"""

from .adapt import TrainLog, adapt, finetune
from .adapter import SparsityAdapter
from .demo import NUM_CLASSES, DemoSegmenter, DigitCanvases, build_demo_model, demo_loader, segmentation_loss
from .distill import Distillation, class_kl, distillation_loss, feature_nmse
from .metrics import Accuracy, MeanIoU, MergeableMetric, Metric
from .proxy import AccuracyProxy, AgreementProxy, CachedProxy, CacheInfo, SplittableProxy, default_proxy, probe_images
from .split import SplitProxy
from .supernet import TASKS, DemoRecipe, DemoSupernet, train_demo_supernet
from .textures import NUM_TEXTURES, TextureScenes, texture_loader

__all__ = [
    "NUM_CLASSES", "NUM_TEXTURES", "TASKS", "Accuracy", "AccuracyProxy", "AgreementProxy", "CacheInfo", "CachedProxy",
    "DemoRecipe", "DemoSegmenter", "DemoSupernet", "DigitCanvases", "Distillation", "MeanIoU", "MergeableMetric",
    "Metric", "SparsityAdapter", "SplitProxy", "SplittableProxy", "TextureScenes", "TrainLog", "adapt",
    "build_demo_model", "class_kl", "default_proxy", "demo_loader", "distillation_loss", "feature_nmse", "finetune",
    "probe_images",
    "segmentation_loss", "texture_loader", "train_demo_supernet",
]
