"""accuracy/split.py: one candidate's scoring split over workers equals one worker's to the last bit (MeanIoU,
accuracy, a plain function, agreement), a search with the split proxy equals the unsplit one on the process pool and
on a 2-node Ray cluster, and bad splits are refused before any work."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from sparsevit_sdk import SearchSession, search_space
from sparsevit_sdk.accuracy import Accuracy, AccuracyProxy, AgreementProxy, MeanIoU, SplitProxy
from sparsevit_sdk.accuracy.metrics import BatchMean
from sparsevit_sdk.demo import NUM_CLASSES, demo_loader
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search.executors import ProcessExecutor, RayExecutor

from ..conftest import RAY
from .conftest import SMALL

BATCHES = 5  # of 2 images each: parts of unequal size (5 = 2 + 2 + 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Workers run one torch thread each; so does this process, so every part is computed alike."""
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def loader():
    return list(demo_loader("val", 2 * BATCHES, batch_size=2, seed=0, **SMALL))


def pixel_accuracy(outputs, targets) -> float:
    return float((outputs.argmax(1) == targets).float().mean())


PROXIES = {
    "mIoU": lambda seg, loader: AccuracyProxy(seg, loader, metric=MeanIoU(NUM_CLASSES)),
    "accuracy": lambda seg, loader: AccuracyProxy(seg, loader, metric=Accuracy()),
    "function": lambda seg, loader: AccuracyProxy(seg, loader, metric=pixel_accuracy),
    "agreement-cosine": lambda seg, loader: AgreementProxy(seg, [x for x, _ in loader], measure="cosine"),
    "agreement-kl": lambda seg, loader: AgreementProxy(seg, [x for x, _ in loader], measure="kl"),
}


@pytest.mark.parametrize("kind", PROXIES)
def test_split_scores_equal_the_whole_set_to_the_last_bit(seg, space, loader, kind):
    proxy = PROXIES[kind](seg, loader)
    for cfg in (space.dense(), space.uniform(0.5), space.config([0.2, 0.4, 0.6, 0.8])):
        whole = proxy(cfg)
        assert [SplitProxy(proxy, parts=n)(cfg) for n in range(1, BATCHES + 1)] == [whole] * BATCHES
    assert seg.block_sparsity == [[0.0, 0.0]] * 4  # left as found


def test_metric_states_add_up(seg, loader):
    """Parts fed to separate metrics merge into the metric of the whole set, in any part order for counts."""
    outputs = [(seg(x), y) for x, y in loader]
    for make in (lambda: MeanIoU(NUM_CLASSES), Accuracy, lambda: BatchMean(pixel_accuracy)):
        whole, parts = make(), [make(), make()]
        for i, (out, y) in enumerate(outputs):
            whole.update(out, y)
            parts[i % 2].update(out, y)
        merged = make()
        merged.merge([p.state() for p in reversed(parts)])
        assert merged.compute() == whole.compute()
    with pytest.raises(ValueError, match=r"mIoU: a state of shape \(3, 3\) cannot merge into one of shape \(8, 8\)"):
        MeanIoU(8).merge([MeanIoU(3).state()])


def search(model, proxy, **kwargs):
    return SearchSession(model, "cpu", proxy=proxy, input_shape=(1, 3, 64, 64), latency_budget=0.9, rest_ms=1.0,
                         population=6, parents=2, generations=2, progress=False, seed=0, **kwargs).run()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["process", pytest.param("ray", marks=RAY)])
def test_a_search_with_the_split_proxy_equals_the_unsplit_one(seg, loader, kind, request):
    proxy = AccuracyProxy(seg, loader, metric=MeanIoU(NUM_CLASSES))
    unsplit = search(seg, proxy)
    if kind == "ray":
        request.getfixturevalue("ray_cluster")  # the session's 2-node cluster (conftest), each its own `ray start`
    agreement, cfg = AgreementProxy(seg, [x for x, _ in loader], measure="kl"), search_space(seg).uniform(0.5)
    with ProcessExecutor(2) if kind == "process" else RayExecutor() as executor:
        split = search(seg, SplitProxy(proxy, parts=3, executor=executor))
        assert SplitProxy(agreement, parts=BATCHES, executor=executor)(cfg) == agreement(cfg)  # floats, in workers
    assert split.best == unsplit.best and split.score == unsplit.score and split.proxy_name == "mIoU"
    pd.testing.assert_frame_equal(split.history, unsplit.history)
    pd.testing.assert_frame_equal(split.progress, unsplit.progress)


@pytest.mark.parametrize("parts", [0, -1, BATCHES + 1, 2.5, True, "2", None])
def test_bad_parts_are_refused(seg, loader, parts):
    proxy = AccuracyProxy(seg, loader, metric=Accuracy())
    with pytest.raises(ValueError, match=rf"parts must be a whole number from 1 to {BATCHES} \(the proxy's batches"):
        SplitProxy(proxy, parts=parts)


def test_what_cannot_split_is_refused_naming_the_fix(seg, loader):
    class Streaming:  # a Metric without state() and merge()
        name = "streaming"

        def reset(self): ...

        def update(self, outputs, targets): ...

        def compute(self):
            return 0.0

    with pytest.raises(TypeError, match=r"has no state\(\) and merge\(\).*see MergeableMetric"):
        SplitProxy(AccuracyProxy(seg, loader, metric=Streaming()), parts=2)
    with pytest.raises(TypeError, match="SplitProxy splits an AccuracyProxy or AgreementProxy"):
        SplitProxy(lambda cfg: 0.5, parts=2)
    with pytest.raises(TypeError, match="executor must have a map"):
        SplitProxy(AccuracyProxy(seg, loader, metric=Accuracy()), parts=2, executor=object())
    traveling = SplitProxy(AccuracyProxy(seg, loader, metric=Accuracy()), parts=2, executor=ProcessExecutor(1))
    with pytest.raises(TypeError, match=r"run the search in-process \(executor='local', the default\)"):
        pickle.dumps(traveling)
