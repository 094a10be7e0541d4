"""Save a swapped subtree under the source library's own keys, and load those keys back.

Where a converter cannot keep the source's module names (Hugging Face's ``encoder.layers``,
torchvision's ``features`` with patch merging between stages), the module it puts in their place
carries :class:`SourceKeys`: hooks that rename every state_dict entry to and from the source's name
for the same tensor.  Names are paired by tensor identity when the model is converted (the sparse
stages hold the source's own parameters and buffers), so the file a sparse model writes is the one
its source would write, key for key, and the source library loads it strictly.  A stage's sparsity
and window score, while not a fresh stage's, are saved beside the source stage's weights.
"""

from __future__ import annotations

from functools import partial
from itertools import chain

import torch
import torch.nn as nn

from ..guards import STATE_KEYS
from ._adopt import unsupported


def _rename(name: str, prefixes: dict[str, str]) -> str | None:
    """``name`` with its prefix among ``prefixes`` replaced by that prefix's value, or None."""
    for old, new in prefixes.items():
        if name.startswith(old):
            return new + name[len(old):]
    return None


class SourceKeys:
    """State_dict hooks of a module that replaced the source subtree it was converted from.

    ``names`` pairs each key of the source subtree's state_dict with the replacement's name for the
    same tensor; where that is a non-persistent buffer of the replacement (torchvision saves its
    position index, the sparse stages derive theirs), ``derived`` lists it: it is saved and loaded
    as the source saves and loads it.  ``stages`` maps each sparse stage's prefix to the source
    stage's, where the stage's state keys go.
    """

    def __init__(self, names: dict[str, str], derived: set[str], stages: dict[str, str]) -> None:
        self.names, self.derived, self.stages = names, derived, stages
        self.stage_keys = {source: sparse for sparse, source in stages.items()}

    @classmethod
    def pair(cls, source: nn.Module, replacement: nn.Module, stages: dict[str, str], library: str) -> SourceKeys:
        """Pair ``source``'s state_dict keys with ``replacement``'s names, before any hook is on it."""
        named = chain(replacement.named_parameters(remove_duplicate=False),
                      replacement.named_buffers(remove_duplicate=False))
        by_tensor: dict[int, str] = {}
        for name, tensor in named:
            by_tensor.setdefault(id(tensor), name)
        saved = replacement.state_dict(keep_vars=True)
        names = {}
        for key, tensor in source.state_dict(keep_vars=True).items():
            if id(tensor) not in by_tensor:
                raise unsupported(library, f"its {key!r} is not a tensor the sparse stages run on")
            names[key] = by_tensor[id(tensor)]
        unpaired = sorted(set(saved) - set(names.values()))
        clashes = sorted(k for k, n in names.items() if k != n and k in saved)
        if unpaired or clashes:
            raise unsupported(library, f"sparse weights {unpaired or clashes} have no name of their own in the source")
        return cls(names, {n for n in names.values() if n not in saved}, stages)

    def install(self, module: nn.Module) -> nn.Module:
        """Put the hooks on ``module`` (partials: torch marks each hook, which a bound method refuses), and
        tell each stage the name it is saved under, for its error messages."""
        module.register_state_dict_post_hook(partial(SourceKeys.save, self))
        module.register_load_state_dict_pre_hook(partial(SourceKeys.load, self))
        for sparse, source in self.stages.items():
            module.get_submodule(sparse.rstrip(".")).saved_under = (sparse, source)
        return module

    def save(self, module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        """Replace ``module``'s entries (the last ones written) by the source's keys, in its order."""
        own = {k[len(prefix):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(prefix)]}
        for key, name in self.names.items():
            state_dict[prefix + key] = module.get_buffer(name).detach() if name in self.derived else own[name]
        paired = set(self.names.values())
        for name, value in own.items():
            if name not in paired:  # a stage's state (guards.STATE_KEYS)
                state_dict[prefix + _rename(name, self.stages)] = value

    def load(self, module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
             missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        """Rename the source's keys to ``module``'s; copy derived buffers in as the source loads them.
        Weights already named as ``module`` names them (an earlier SDK's checkpoint) pass unchanged."""
        renamed = {}  # put in after all are taken out: a source's stage key can be another stage's sparse name
        for key in [k for k in state_dict if k.startswith(prefix)]:
            relative = key[len(prefix):]
            name = self.names.get(relative)
            if name is None and relative.rsplit(".", 1)[-1] in STATE_KEYS:
                name = _rename(relative, self.stage_keys)
            if name is None:
                continue
            value = state_dict.pop(key)
            if name not in self.derived:
                renamed[prefix + name] = value
                continue
            buffer = module.get_buffer(name)
            if tuple(value.shape) != tuple(buffer.shape):
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} from "
                                  f"checkpoint, the shape in current model is {tuple(buffer.shape)}.")
                continue
            with torch.no_grad():
                buffer.copy_(value)
        state_dict.update(renamed)
