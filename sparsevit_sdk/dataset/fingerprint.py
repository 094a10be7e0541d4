"""Device fingerprint identity: which measurements are comparable.

A fingerprint is a flat JSON-able dict stored next to every dataset (the profiler's
``device_fingerprint`` writes it).  Its ``fingerprint_id`` hashes only the *identity*
fields: the properties that make two measurements comparable (chip, core count, CPU
thread count, ISA and timing clock; on NVIDIA memory, max clocks and power limit).
Timestamps, driver/torch versions and current clocks are recorded but left out of the
id: they change between runs on the same device.  The user's ``hw`` label is left out
too: it names a target, the id names the silicon and its settings.

Here lives what the builder and the predictor share: the id, loading a stored
fingerprint (its id checked), reading the shapes a predictor stores, and comparing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

from .._documents import DocumentKind, Field, read_json

# the sidecar beside each dataset: the fingerprint after a header (files written before it had one are schema 1 too)
FINGERPRINT = DocumentKind("sparsevit-device-fingerprint", 1, what="device fingerprint", implicit=1,
                           fix="restore the file, or re-profile the device with `sparsevit-profile` into a new folder")
CPU_IDENTITY = ("device_type", "name", "machine", "cores", "threads", "isa", "clock")
CUDA_IDENTITY = ("device_type", "name", "memory_gib", "compute_capability", "sm_clock_max_mhz",
                 "mem_clock_max_mhz", "power_limit_w")


def identity(fingerprint: dict) -> dict:
    """The fields that decide whether two fingerprints are the same measuring device."""
    keys = CUDA_IDENTITY if fingerprint["device_type"] == "cuda" else CPU_IDENTITY
    return {k: fingerprint.get(k) for k in keys}


def fingerprint_id(fingerprint: dict, fields: Sequence[str] | None = None) -> str:
    """Short hash of the identity fields: today's (:func:`identity`), or the ``fields`` a
    stored fingerprint names, which keeps the id of a sidecar from an earlier version."""
    values = identity(fingerprint) if fields is None else {k: fingerprint.get(k) for k in fields}
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_fingerprint(path: str | os.PathLike) -> dict:
    """The fingerprint stored at ``path``, once its stored id is the hash of its content.

    The id is what keeps devices apart; a sidecar edited by hand (``"name": "NVIDIA A100"``
    over CPU rows) would otherwise lend its rows, and a predictor fitted on them, another
    device's description.
    """
    source = str(path)
    data = FINGERPRINT.upgrade(read_json(path, what=FINGERPRINT.what, fix=FINGERPRINT.fix), source)
    doc = Field(data, source=source, what=FINGERPRINT.what, fix=FINGERPRINT.fix)
    stored = doc["fingerprint_id"].text()
    doc["device_type"].text()
    fields = ([f.text() for f in doc["identity_fields"].elements(nonempty=True)] if "identity_fields" in data
              else list(identity(data)))
    actual = fingerprint_id(data, fields)
    if stored != actual:
        raise doc["fingerprint_id"].error(
            f"is {stored!r}, but the identity fields ({', '.join(fields)}) hash to {actual!r}: "
            "the file was edited or damaged")
    return {k: v for k, v in data.items() if k not in ("format", "schema_version")}  # the fingerprint itself


def sidecar(fingerprint: dict) -> dict:
    """What the sidecar file of ``fingerprint`` holds: the header, then the fingerprint."""
    return {**FINGERPRINT.header(), **fingerprint}


def describe_mismatch(old: dict, new: dict) -> str:
    """``field: old -> new`` for every identity field that differs."""
    a, b = identity(old) if "device_type" in old else {}, identity(new)
    return ", ".join(f"{k}: {a.get(k)!r} -> {b[k]!r}" for k in b if a.get(k) != b[k])


def stored_fingerprints(info: dict | None) -> list[dict]:
    """The device description(s) a predictor stores as ``learned_.fingerprint``, in any of its shapes:
    one fingerprint, several keyed by their id (fitted with ``mix``), or ``{"fingerprint_id":
    [ids]}`` where no sidecar was known."""
    info = info or {}
    return [info] if "fingerprint_id" in info else [v for v in info.values() if isinstance(v, dict)]


def same_device(here: dict, fingerprints: Sequence[dict]) -> bool:
    """Whether the fingerprint ``here`` is one of ``fingerprints`` (by id)."""
    ids = {i for fp in fingerprints
           for i in ([fp["fingerprint_id"]] if isinstance(fp["fingerprint_id"], str) else fp["fingerprint_id"])}
    return here["fingerprint_id"] in ids


def device_mismatch(here: dict, fingerprints: Sequence[dict]) -> str | None:
    """None when ``here`` is one of ``fingerprints``; else what differs (field: old -> new)."""
    if same_device(here, fingerprints):
        return None
    described = [fp for fp in fingerprints if "device_type" in fp]
    return describe_mismatch(described[0], here) if described else "the predictor records no device description"
