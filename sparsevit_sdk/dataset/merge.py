"""Profile datasets from several runs and devices, merged, then split by device fingerprint.

A predictor describes one device: rows measured on two devices (or with two clocks or
thread counts, which change the fingerprint too) fitted together give a model of neither.
So datasets merge freely, but :func:`select_device` hands out one fingerprint's rows unless
the caller says the devices are interchangeable (``mix=True``; e.g. identical boards).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .schema import latest_rows


def merge_profiles(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One frame of all rows of ``frames`` (from :func:`~.files.load_profiles`);
    a measurement in several keeps its latest row.  ``attrs["fingerprints"]`` merges theirs."""
    if not frames:
        raise ValueError("no profile datasets given")
    df = latest_rows(pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable"))
    df.attrs["fingerprints"] = {k: v for f in frames for k, v in f.attrs.get("fingerprints", {}).items()}
    return df


def _describe(df: pd.DataFrame, fp_id: str) -> str:
    fp = df.attrs.get("fingerprints", {}).get(fp_id, {})
    rows = df[df["fingerprint_id"] == fp_id]
    return (f"{fp_id} (hw {', '.join(sorted(rows['hw'].unique()))}, {fp.get('name', 'no fingerprint sidecar')}, "
            f"{len(rows)} rows)")


def select_device(df: pd.DataFrame, *, fingerprint: str | None = None,
                  mix: bool = False) -> tuple[pd.DataFrame, dict | None]:
    """The rows one predictor may be fitted on, and the fingerprint to store with it (one
    sidecar; with ``mix``, all of them keyed by id; None where no sidecar is known).

    Several fingerprints are refused unless ``fingerprint`` picks one or ``mix`` is True.
    """
    ids = sorted(df["fingerprint_id"].unique())
    sidecars = df.attrs.get("fingerprints", {})
    if fingerprint is not None:
        if fingerprint not in ids:
            raise ValueError(f"no rows of fingerprint {fingerprint!r}; the datasets hold "
                             f"{'; '.join(_describe(df, i) for i in ids)}")
        picked = df[df["fingerprint_id"] == fingerprint].reset_index(drop=True)
        picked.attrs["fingerprints"] = {fingerprint: sidecars[fingerprint]} if fingerprint in sidecars else {}
        return picked, sidecars.get(fingerprint)
    if len(ids) > 1 and not mix:
        raise ValueError(f"the datasets hold {len(ids)} device fingerprints: "
                         f"{'; '.join(_describe(df, i) for i in ids)}. "
                         "A predictor describes one device: pick one with fingerprint=ID (--fingerprint ID), or, if "
                         "the devices are interchangeable, fit one predictor over all with mix=True "
                         "(--mix-fingerprints)")
    if len(ids) == 1:
        return df, sidecars.get(ids[0])
    return df, {i: sidecars[i] for i in ids if i in sidecars} or None
