"""Whether the proxy can rank configs, read off the references the engine scores before it optimises.

A search maximises its proxy; a proxy that scores noise (an untrained model, labels the model was not
trained for, too few images) still has a maximum, and the search finds it: an under-trained classifier
scoring 0.21 dense and 0.41 at the sparsest config made a search pick the sparsest without a word.  Two
signs, read off the dense config and the uniform configs already scored, are named in one warning:

- the dense model scores near chance: less than ``Z`` standard errors or ``NEAR_CHANCE`` of the way from
  chance to a perfect 1 above what a model that learned nothing scores (the proxy's ``chance()``);
- a sparse uniform config beats dense by more than ``Z`` standard errors of their difference, each
  score's error the proxy's ``noise(score)`` (for :class:`~sparsevit_sdk.accuracy.AccuracyProxy` the
  binomial ``sqrt(p (1 - p) / N)`` over its N images).  The two scores are of the same images, so their
  difference varies less than the independent sum taken here: the test errs towards silence.

A proxy without ``chance()`` or ``noise()`` (a plain function, the label-free agreement, which is 1.0 at
dense and never beaten) is not judged on what it does not say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..config import SparsityConfig
from .protocols import Proxy, proxy_name

Z = 2.0  # standard errors a difference must exceed to count (one-sided, about 2 % by chance alone)
NEAR_CHANCE = 0.1  # share of the way from chance to a perfect score under which dense counts as near chance
FIX = ("train (or adapt) the model before searching, score it with labels of the task it was trained for, or give "
       "the proxy more calibration images")


def proxy_warning(proxy: Proxy, scores: Mapping[SparsityConfig, float], dense: SparsityConfig) -> str | None:
    """A sentence naming the numbers and the fix when ``proxy``'s ``scores`` (by config; ``dense`` and
    the uniform configs among them are read) show it cannot rank configs, else None."""
    dense_score = scores[dense]
    noise = getattr(proxy, "noise", None)
    chance = getattr(proxy, "chance", None)
    signs = []
    level = None if chance is None else chance()
    if level is not None:
        margin = max(Z * (noise(dense_score) if noise is not None else 0.0), NEAR_CHANCE * (1 - level))
        if dense_score < level + margin:
            where = "below" if dense_score < level else "near"
            signs.append(f"the dense model scores {dense_score:.4g}, {where} chance ({level:.4g}: what always "
                         "answering the most frequent label scores)")
    uniform = [c for c in scores if c != dense and len(set(c.ratios)) == 1]
    if noise is not None and uniform:
        top = max(uniform, key=scores.__getitem__)
        error = math.hypot(noise(dense_score), noise(scores[top]))
        if scores[top] - dense_score > Z * error:
            signs.append(f"the uniform config {top} scores {scores[top]:.4g}, above the dense {dense_score:.4g} by "
                         f"{scores[top] - dense_score:.4g}, more than {Z:g} standard errors ({error:.3g}) of the "
                         "calibration set's noise")
    if not signs:
        return None
    return (f"proxy {proxy_name(proxy)!r} cannot rank configs: {'; and '.join(signs)}. The search would optimise "
            f"noise: {FIX}")
