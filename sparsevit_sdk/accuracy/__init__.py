"""Accuracy side of the search: sparsity-aware adaptation, cached accuracy proxies, exact splits.

    model = build_demo_model("swin_micro")          # any model with a sparse Swin backbone (sparsevit_sdk.demo here)
    finetune(model, demo_loader("train", 4000), segmentation_loss, steps=400)   # dense
    adapt(model, demo_loader("train", 4000), segmentation_loss, steps=240, distill=True)   # supernet
    proxy = AccuracyProxy(model, demo_loader("val", 64), metric=MeanIoU(NUM_CLASSES))
    proxy(search_space(model).uniform(0.5))                                     # -> mIoU
    SplitProxy(proxy, parts=4, executor=RayExecutor())   # the same mIoU, each config scored by 4 workers
"""

from .adapt import TrainLog, adapt, finetune
from .adapter import SparsityAdapter
from .distill import Distillation, class_kl, distillation_loss, feature_nmse
from .metrics import Accuracy, MeanIoU, MergeableMetric, Metric
from .proxy import AccuracyProxy, AgreementProxy, CachedProxy, CacheInfo, SplittableProxy
from .split import SplitProxy

__all__ = [
    "Accuracy", "AccuracyProxy", "AgreementProxy", "CacheInfo", "CachedProxy", "Distillation", "MeanIoU",
    "MergeableMetric", "Metric", "SparsityAdapter", "SplitProxy", "SplittableProxy", "TrainLog", "adapt",
    "class_kl", "distillation_loss", "feature_nmse", "finetune",
]
