"""Synthetic worlds: the embedded stand-ins for the posts' data (private watch set, LVIS, SA-Co/Gold).

Everything is generated deterministically from a seed into ``data/worlds/<scale>-seed<seed>/`` (git-ignored,
regenerated only when missing or when the generator-config hash changed) in the real formats, so that
``common.data.load_pairs`` reads the real datasets the same way:

- **watch world** (Post 01 all sections; Post 02 §replay+negatives): rendered wristwatch close-ups (the case fills
  most of the frame, so thin parts span several cells of the tiny model's mask grid) with the posts'
  37 watch concepts (``WATCH_CONCEPTS``), keeping their structure: synonyms share one rendered region,
  compounds are variants (``metal dial`` only on metallic dials), crown and pusher sit side by side on the
  case flank, and the peripheral-metal group shares one metallic appearance.
  Splits: ``watch_train`` / ``watch_test`` (COCO instances), ``watch_negatives`` (Post 02's negatives
  corpus: quadrant patches paired with components absent from the patch; SA-Co style, no annotations) and
  ``watch_pretrain`` (a disjoint pool from which the base pre-training mix takes a small share).
- **open-vocab world** (Post 02 §1 refusal collapse, base pre-training): coloured, textured objects of random
  shape. A category is a (colour, pattern) pair, named ``"<colour> <pattern> object"`` (8 x 5 = 40); colour and
  a patch-scale texture are both learnable by a tiny ViT at 112 px / patch 14, shape is a nuisance.
  Splits: ``ov_pretrain`` (positives + graded negatives typed ``absent`` / ``attribute_shared`` / ``binding``),
  ``lvis_train`` / ``lvis_val`` (LVIS-like, COCO instances, positive-only replay and val),
  ``saco_gold`` (SA-Co/Gold-like eval, 7 subsets named after SA-Co/Gold's; one combined file with a
  ``subset`` field per pair, and one file per subset ``saco_gold_<subset>``, as the real benchmark ships).

Masks are whole-part regions (the dial includes what is printed or mounted on it, as annotators outline a
dial); repetitive tiny parts (markers, stones, pearls, lumi, print, indices, engraving) are one *group mask*,
as SA-Co/Gold does when instances are too small to separate. Images are 112 x 112 PNGs, rendered at 2x and
box-filtered; masks are the 2x regions averaged (>= 0.5).

SA-Co/Gold format, verified against facebookresearch/sam3 ``scripts/eval/gold/README.md`` and the HF dataset
viewer of SACo-Gold: ``images`` entries are image-NP pairs with ``id``, ``file_name``, ``text_input``,
``width``, ``height``, ``queried_category`` (a string), ``is_instance_exhaustive`` and ``is_pixel_exhaustive``
(0/1); ``annotations`` carry ``image_id`` (the pair id), ``bbox`` [x,y,w,h] and ``area`` *normalised by the image
size*, ``segmentation`` RLE (``counts`` str, ``size`` [h, w]), ``category_id`` 1, ``iscrowd`` 0, ``source``;
``categories`` is one ``{"supercategory": "object", "id": 1, "name": "object"}``; a pair with no annotation is
a negative. ``info.description`` names the subset (e.g. "SA-Co/Gold-Attributes-A"). We add three fields the real
files lack: ``neg_type``, ``subset`` and ``world``.

CLI: ``python -m common.worlds --contact-sheets [--seed 0] [--scale tiny|micro]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from common.io import DATA, RESULTS, atomic_write_bytes, atomic_write_json, read_json

GENERATOR_VERSION = 7  # bump when rendering/sampling changes: the cache hash includes it
IMAGE_SIZE = 112
#: Case radius (px) and centre jitter of a rendered watch. Close-ups: the case fills most of the frame and parts
#: near the edge may be cut off, so that thin parts (hands, rings, crown) span several pixels of the 32 x 32 mask
#: grid of the tiny model (112 px, patch 14). At radius 36-46 (generator v6) the tiny model could not fit them.
WATCH_RADIUS = (56.0, 80.0)
WATCH_OFFSET = 20.0
SUPERSAMPLE = 2

# =========================================================================== watch vocabulary (Post 01 / 02)
#: The posts' 37 watch concepts. Value = where the name comes from (a post section) or "added".
WATCH_SOURCES: dict[str, str] = {
    "bezel": "post01 abstract, §7", "lunette": "post01 §7 synonyms", "dial": "post01 §7",
    "metal dial": "post01 §7 compounds", "crown": "post01 abstract", "pusher": "post01 §7",
    "lugs": "post01 §7", "clasp": "post01 abstract; post02 negatives corpus", "rehaut": "post01 §7",
    "strap": "post01 §7", "metal strap": "post01 §7 compounds", "leather": "post01 §7 synonyms",
    "hands": "post01 §7 Fig 7.1; post02 negatives corpus", "hour hand": "post01 §7 synonyms",
    "minute hand": "post01 §7 synonyms", "h-marker": "post01 §7 Fig 7.1", "case": "post01 §7 Fig 7.1",
    "metal": "post01 §7 peripheral metal", "pearl": "post01 §7 synonyms", "pearls": "post01 §7 synonyms",
    "diamonds": "post01 §7 synonyms", "stones": "post01 §7 synonyms", "clockwork": "post01 §7 synonyms",
    "movement": "post01 §7 synonyms", "sealing": "post01 §3 Fig 3.1", "caseback": "post02 negatives corpus",
    "lumi": "post02 negatives corpus", "subdials": "post02 negatives corpus", "print": "post02 negatives corpus",
    "indices": "post02 negatives corpus",
    # added to complete the set to 37 (plausible components the posts do not name)
    "second hand": "added", "crystal": "added", "date window": "added", "logo": "added", "screws": "added",
    "rotor": "added", "engraving": "added",
}
WATCH_CONCEPTS: tuple[str, ...] = tuple(WATCH_SOURCES)
WATCH_FROM_POSTS: tuple[str, ...] = tuple(c for c, s in WATCH_SOURCES.items() if s != "added")
WATCH_ADDED: tuple[str, ...] = tuple(c for c, s in WATCH_SOURCES.items() if s == "added")
#: Post 01 §7 Table 7.2 synonym pairs that share one rendered region (hour/minute hand are distinct objects).
SYNONYMS: tuple[tuple[str, str], ...] = (("bezel", "lunette"), ("clockwork", "movement"), ("diamonds", "stones"),
                                         ("pearl", "pearls"), ("leather", "strap"))
#: Post 01 §7 Table 7.4 compounds: the compound is present only on the variant, with the base's region.
COMPOUNDS: tuple[tuple[str, str], ...] = (("dial", "metal dial"), ("strap", "metal strap"))
#: Post 01 §7 Table 7.3: co-located on the case flank.
CO_LOCATED: tuple[tuple[str, str], ...] = (("crown", "pusher"),)
#: Post 01 §7 Table 7.3 peripheral-metal group: one metallic appearance around the case.
PERIPHERAL_METAL: tuple[str, ...] = ("lugs", "metal", "rehaut", "bezel", "dial")
#: Post 02 §3: the negatives corpus uses 22 component categories (the 9 it names first, 13 chosen here).
NEG_CORPUS_CONCEPTS: tuple[str, ...] = (
    "caseback", "dial", "hands", "lumi", "clasp", "subdials", "crown", "print", "indices",
    "bezel", "rehaut", "lugs", "pusher", "hour hand", "minute hand", "h-marker", "date window", "logo",
    "sealing", "rotor", "screws", "diamonds")
#: Watch concepts the base sees in pre-training (everyday words a web-scale model would know); the jargon (rehaut,
#: lunette, sealing, lumi, h-marker, ...) is never seen. Post 01 §4's text-encoder rotation (Fig 4.1) is the guide:
#: the words base SAM3 already knew barely moved (pearl, leather, strap, bezel, dial), the jargon rotated most
#: (rehaut, lunette, sealing, pusher, lugs, clockwork, metal strap, metal dial).
WATCH_PRETRAIN_CONCEPTS: tuple[str, ...] = (
    "dial", "strap", "leather", "crown", "hands", "case", "metal", "bezel", "diamonds", "pearls", "pearl", "clasp",
    "hour hand", "minute hand", "second hand", "crystal", "logo", "screws")

# =========================================================================== open-vocab vocabulary
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "orange": (240, 135, 20), "yellow": (235, 215, 30), "green": (40, 160, 50),
    "teal": (20, 180, 175), "blue": (35, 75, 210), "purple": (130, 45, 175), "pink": (245, 120, 185)}
PATTERNS: tuple[str, ...] = ("plain", "striped", "checkered", "dotted", "gridded")
OV_NOUN = "object"
NEG_TYPES_OV = ("absent", "attribute_shared", "binding")
NEG_TYPES_WATCH = ("absent", "outside_patch")
#: SA-Co/Gold's 7 subsets (its config names) and the property each synthetic subset varies.
SACO_SUBSETS: dict[str, str] = {
    "metaclip_nps": "baseline scenes: 1-3 categories, medium objects",
    "sa1b_nps": "cluttered scenes: 3-4 categories on a background of unnamed grey/brown distractors",
    "attributes": "attribute-dense: every scene's categories share a colour or a pattern",
    "crowded": "crowded: 1-2 categories with 4-7 instances each, smaller objects (28-36 px)",
    "wiki_common": "large objects: 1-2 categories, 46-62 px",
    "fg_food": "fine-grained: all objects in a scene share one colour (pattern tells them apart)",
    "fg_sports_equipment": "small objects: 28-34 px, 2-3 categories",
}


def ov_categories() -> list[tuple[str, str]]:
    """The 40 open-vocab categories as (colour, pattern) pairs, in a fixed order (id = index + 1)."""
    return [(c, p) for c in COLOURS for p in PATTERNS]


def ov_phrase(colour: str, pattern: str) -> str:
    """The noun phrase naming an open-vocab category, e.g. ``"teal striped object"``."""
    return f"{colour} {pattern} {OV_NOUN}"


def vocabulary() -> list[str]:
    """Sorted set of every word of every phrase of both worlds (fixed by the code, not by sampled data)."""
    words = {w for c in WATCH_CONCEPTS for w in c.split()}
    words |= {w for c, p in ov_categories() for w in ov_phrase(c, p).split()}
    return sorted(words)


# =========================================================================== sizes
@dataclass(frozen=True)
class WorldSizes:
    """How many images each split has (the generator's size config; part of the cache hash)."""

    watch_train: int
    watch_test: int
    watch_pretrain: int
    negatives_per_patch: int
    ov_pretrain: int
    lvis_train: int
    lvis_val: int
    saco_per_subset: int


SCALES: dict[str, WorldSizes] = {
    "micro": WorldSizes(watch_train=4, watch_test=2, watch_pretrain=3, negatives_per_patch=2, ov_pretrain=8,
                        lvis_train=4, lvis_val=2, saco_per_subset=2),
    "tiny": WorldSizes(watch_train=144, watch_test=24, watch_pretrain=80, negatives_per_patch=4, ov_pretrain=2000,
                       lvis_train=600, lvis_val=150, saco_per_subset=50),
}
SPLITS = ("watch_train", "watch_test", "watch_negatives", "watch_pretrain", "ov_pretrain", "lvis_train",
          "lvis_val", "saco_gold")


# =========================================================================== small helpers
def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent, reproducible generator for (seed, split, index, ...)."""
    ints = [seed] + [int(hashlib.sha1(str(k).encode()).hexdigest()[:8], 16) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(ints))


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a bool HxW mask via pycocotools, with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _downsample(hi: np.ndarray) -> np.ndarray:
    """Box-filter a (2H, 2W[, C]) array to (H, W[, C]) (float result)."""
    assert SUPERSAMPLE == 2
    h = hi.astype(np.float32) if hi.dtype == bool else hi
    return (h[0::2, 0::2] + h[1::2, 0::2] + h[0::2, 1::2] + h[1::2, 1::2]) * 0.25


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Hi-res pixel-centre coordinates in 112-px units."""
    n = IMAGE_SIZE * SUPERSAMPLE
    c = ((np.arange(n) + 0.5) / SUPERSAMPLE).astype(np.float32)
    return np.meshgrid(c, c)  # X, Y


_X, _Y = _grid()


_XL, _YL = np.meshgrid(np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5, np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5)


def _background(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """A smooth gradient + low-frequency blotches + grain (computed at 112 px, repeated to the 2x grid),
    hi-res float RGB in [0, 255]."""
    base = rng.uniform(40, 225, 3)
    grey = base.mean()
    base = grey + (base - grey) * saturation
    ang = rng.uniform(0, 2 * np.pi)
    grad = ((_XL * np.cos(ang) + _YL * np.sin(ang)) / IMAGE_SIZE - 0.5) * rng.uniform(-60, 60)
    blot = np.zeros_like(_XL)
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.08), rng.uniform(0, 6.3)
        blot += np.sin(_XL * fx + ph) * np.cos(_YL * fy + ph) * rng.uniform(4, 14)
    img = base[None, None, :] + (grad + blot)[..., None]
    img = (img + rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * 3).astype(np.float32)
    return np.repeat(np.repeat(img, SUPERSAMPLE, axis=0), SUPERSAMPLE, axis=1)


# =========================================================================== watch world
METAL_TONES = {"silver": (205, 207, 212), "gold": (215, 178, 92), "rose": (210, 150, 125),
               "gunmetal": (110, 114, 122), "black": (62, 62, 68)}
DIAL_COLOURS = [(20, 22, 28), (240, 238, 230), (25, 45, 110), (30, 80, 55), (235, 225, 200), (120, 20, 30),
                (70, 75, 85)]
BEZEL_COLOURS = [(15, 15, 18), (20, 40, 120), (150, 20, 25), (20, 90, 50)]
LEATHER_COLOURS = [(110, 62, 30), (40, 28, 20), (160, 110, 60), (25, 30, 60), (20, 20, 20)]


class _Watch:
    """Geometry of one watch pose: watch-frame coordinates of every hi-res pixel (units of case radius R).

    u points to 3 o'clock, v to 6 o'clock; ``a`` is the clock angle (0 at 12, clockwise), ``r`` the radius.
    """

    def __init__(self, cx: float, cy: float, R: float, theta: float, squash: float, back: bool):
        dx, dy = _X - cx, _Y - cy
        c, s = math.cos(theta), math.sin(theta)
        self.u = (dx * c + dy * s) / (R * squash) * (-1 if back else 1)
        self.v = (-dx * s + dy * c) / R
        self.r = np.hypot(self.u, self.v)
        self.a = np.mod(np.arctan2(self.u, -self.v), 2 * np.pi)
        self.R = R
        self._metal: dict = {}

    def ring(self, r0: float, r1: float) -> np.ndarray:
        return (self.r >= r0) & (self.r < r1)

    def disc(self, cu: float, cv: float, rad: float) -> np.ndarray:
        return (self.u - cu) ** 2 + (self.v - cv) ** 2 < rad ** 2

    def radial(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(t, w): coordinate along the clock direction ``alpha`` and perpendicular to it."""
        t = self.u * math.sin(alpha) - self.v * math.cos(alpha)
        w = self.u * math.cos(alpha) + self.v * math.sin(alpha)
        return t, w

    def baton(self, alpha: float, t0: float, t1: float, half: float, taper: float = 0.0) -> np.ndarray:
        t, w = self.radial(alpha)
        hw = half * (1 - taper * np.clip(t / max(t1, 1e-6), 0, 1))
        return (t >= t0) & (t <= t1) & (np.abs(w) <= hw)

    def metal(self, tone: tuple[int, int, int], phase: float, aniso: float = 1.0) -> np.ndarray:
        """Metallic shading: anisotropic ring reflection + a specular lobe, shared by every metal part."""
        key = (tuple(tone), round(phase, 6), aniso)
        if key not in self._metal:
            d = np.mod(self.a - phase + np.pi, 2 * np.pi) - np.pi
            val = 0.62 + 0.3 * aniso * np.cos(d) + 0.35 * np.exp(-(d / 0.35) ** 2) - 0.1 * (1 - aniso) * self.v
            self._metal[key] = np.asarray(tone, np.float32)[None, None, :] * val[..., None].astype(np.float32)
        return self._metal[key]


def _clock_pos(alpha: float, rho: float) -> tuple[float, float]:
    return rho * math.sin(alpha), -rho * math.cos(alpha)


def render_watch(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, list[np.ndarray]], dict]:
    """Render one watch: (uint8 112x112x3 image, {concept: [instance bool masks]}, spec).

    Serves Post 01 (every section trains/evaluates on watch images) and Post 02 §3 (quadrant negatives).
    Synonyms and compounds are derived from the base parts at the end, so they share masks exactly.
    """
    back = rng.random() < 0.2
    R = rng.uniform(*WATCH_RADIUS)
    w = _Watch(IMAGE_SIZE / 2 + rng.uniform(-WATCH_OFFSET, WATCH_OFFSET),
               IMAGE_SIZE / 2 + rng.uniform(-WATCH_OFFSET, WATCH_OFFSET), R,
               math.radians(rng.uniform(-35, 35)), rng.uniform(0.82, 1.0), back)
    tone = tuple(METAL_TONES[rng.choice(list(METAL_TONES))])
    phase = rng.uniform(0, 2 * np.pi)
    img = _background(rng, rng.uniform(0.1, 0.9))
    parts: dict[str, list[np.ndarray]] = {}
    spec: dict = {"view": "back" if back else "front", "R": round(R, 2)}

    def paint(region: np.ndarray, colour) -> None:
        col = np.broadcast_to(np.asarray(colour, float), img.shape) if np.ndim(colour) <= 1 else colour
        img[region] = col[region]

    paint.canvas = img  # type: ignore[attr-defined]  (lets _blend mix translucent layers)

    def add(concept: str, region: np.ndarray, colour=None) -> None:
        if colour is not None:
            paint(region, colour)
        parts.setdefault(concept, []).append(region)

    # strap (two pieces, beyond the case) and clasp ------------------------------------------------
    has_strap = rng.random() < 0.95
    leather = rng.random() < 0.6
    spec["strap"] = ("leather" if leather else "metal") if has_strap else None
    if has_strap:
        lcol = np.asarray(LEATHER_COLOURS[rng.integers(len(LEATHER_COLOURS))], float)
        for sv in (-1, 1):
            reg = (np.abs(w.u) <= 0.38) & (sv * w.v >= 0.9) & (w.r >= 0.95)
            if leather:
                col = lcol * (0.9 + 0.1 * np.cos(w.u * 5))[..., None]
                stitch = (np.abs(np.abs(w.u) - 0.31) < 0.018) & (np.mod(w.v * 12, 1) < 0.5)
                col = np.where(stitch[..., None], lcol * 0.5 + 110, col)
            else:
                col = w.metal(tone, phase, aniso=0.3)
                links = (np.mod(w.v * 5.5, 1) < 0.12) | (np.abs(np.abs(w.u) - 0.13) < 0.02)
                col = np.where(links[..., None], col * 0.55, col)
            add("strap", reg, col)
        if rng.random() < 0.45:
            sv = 1 if rng.random() < 0.7 else -1
            d0 = rng.uniform(1.45, 1.75)
            reg = (np.abs(w.u) <= 0.44) & (sv * w.v >= d0) & (sv * w.v <= d0 + 0.26)
            col = w.metal(tone, phase + 1.0, aniso=0.4)
            if leather:  # buckle frame with a tongue: leather shows inside the frame
                inner = (np.abs(w.u) <= 0.34) & (sv * w.v >= d0 + 0.07) & (sv * w.v <= d0 + 0.19)
                tongue = (np.abs(w.u) <= 0.04) & inner
                col = np.where((inner & ~tongue)[..., None], lcol[None, None, :] * 0.8, col)
            add("clasp", reg, col)

    # lugs --------------------------------------------------------------------------------------------
    if rng.random() < 0.95:
        for sv in (-1, 1):
            for su in (-1, 1):
                t = sv * w.v
                reg = (su * w.u >= 0.39) & (su * w.u <= 0.62 - 0.1 * np.clip(t - 0.8, 0, 1)) & (t <= 1.25) & (w.r >= 0.97)
                add("lugs", reg, w.metal(tone, phase + 0.6, aniso=0.2))
    # crown and pushers on the flank (3 o'clock; mirrored in back view) --------------------------------
    if rng.random() < 0.9:
        reg = (w.u >= 0.93) & (w.u <= 1.16) & (np.abs(w.v) <= 0.12)
        col = w.metal(tone, phase, aniso=0.2)
        grooves = np.mod(w.v * 40, 1) < 0.4
        add("crown", reg, np.where(grooves[..., None], col * 0.7, col))
    chrono = rng.random() < 0.3 and not back
    spec["chronograph"] = bool(chrono)
    if rng.random() < (0.8 if chrono else 0.12):
        for sv in ((-1, 1) if rng.random() < 0.7 else ((-1,) if rng.random() < 0.5 else (1,))):
            reg = (w.u >= 0.9) & (w.u <= 1.08) & (np.abs(w.v - sv * 0.32) <= 0.075) & (w.r >= 0.95)
            add("pusher", reg, w.metal(tone, phase + 0.3, aniso=0.3))

    if back:
        _render_back(w, rng, tone, phase, paint, add, spec)
    else:
        _render_front(w, rng, tone, phase, paint, add, spec, chrono)

    image = np.clip(_downsample(img) + 0.5, 0, 255).astype(np.uint8)
    lo = {c: [m for m in (_downsample(r) >= 0.5 for r in regs) if np.count_nonzero(m) >= 3]
          for c, regs in parts.items()}
    lo = {c: ms for c, ms in lo.items() if ms}
    return image, _derive_concepts(lo, spec), spec


def _render_front(w: _Watch, rng, tone, phase, paint, add, spec, chrono: bool) -> None:
    """Case, bezel, rehaut, dial and everything on the dial, then the crystal (front view)."""
    has_bezel, has_rehaut = rng.random() < 0.85, rng.random() < 0.7
    case_in = 0.87 if has_bezel else 0.70
    add("case", w.ring(case_in, 1.0), w.metal(tone, phase, aniso=1.0))
    diamonds = has_bezel and rng.random() < 0.2
    metal_bezel = diamonds or rng.random() < 0.6
    spec.update(bezel=("metal" if metal_bezel else "ceramic") if has_bezel else None)
    if has_bezel:
        reg = w.ring(0.70, 0.87)
        paint(w.ring(0.865, 0.875), np.asarray(tone) * 0.35)
        if metal_bezel:
            col = w.metal(tone, phase + 2.2, aniso=0.8)
            col = np.where((np.mod(w.a * 60 / np.pi, 1) < 0.3)[..., None] & w.ring(0.83, 0.87)[..., None], col * 0.7, col)
        else:
            bc = np.asarray(BEZEL_COLOURS[rng.integers(len(BEZEL_COLOURS))], float)
            col = np.broadcast_to(bc, (*w.r.shape, 3)).copy()
            ticks = (np.mod(w.a * 6 / np.pi + 0.5, 1) < 0.12) & w.ring(0.74, 0.84)
            col[ticks] = 230
        add("bezel", reg, col)
        if diamonds:
            n = int(rng.integers(14, 20))
            reg = np.zeros_like(w.r, bool)
            for k in range(n):
                cu, cv = _clock_pos(2 * np.pi * k / n, 0.785)
                reg |= w.disc(cu, cv, 0.06)
            sparkle = 215 + 40 * np.cos(w.u * 90) * np.cos(w.v * 90)
            add("diamonds", reg, np.stack([sparkle * 0.95, sparkle, sparkle], -1))
    dial_r = 0.62 if has_rehaut else 0.70
    metal_rehaut = has_rehaut and rng.random() < 0.7
    metal_dial = rng.random() < 0.35
    dcol = np.asarray(DIAL_COLOURS[rng.integers(len(DIAL_COLOURS))], float)
    spec.update(rehaut=("metal" if metal_rehaut else "printed") if has_rehaut else None,
                dial="metal" if metal_dial else "enamel")
    if has_rehaut:
        col = w.metal(tone, phase + np.pi, aniso=0.9) if metal_rehaut else np.broadcast_to(dcol * 0.7, (*w.r.shape, 3))
        col = np.where(((np.mod(w.a * 30 / np.pi, 1) < 0.25) & w.ring(0.64, 0.70))[..., None], col * 0.6, col)
        paint(w.ring(0.695, 0.705), np.asarray(tone) * 0.3)
        add("rehaut", w.ring(0.62, 0.70), col)
    if metal_dial:  # sunburst metal dial, same tone family as the case
        sun = 0.7 + 0.22 * np.cos(2 * (w.a - phase)) + 0.05 * np.cos(w.a * 90)
        dial_col = np.asarray(tone, float)[None, None, :] * sun[..., None]
    else:
        dial_col = dcol[None, None, :] * (0.92 + 0.08 * np.cos(w.a - phase))[..., None]
    add("dial", w.r < dial_r, dial_col)
    ink = np.asarray((235, 235, 235) if dcol.mean() < 120 and not metal_dial else (25, 25, 30), float)

    # slots at 3, 6, 9 o'clock hold a subdial, the date window (3) or an open-heart movement (6/9) ----
    slots: dict[int, str] = {}
    if chrono:
        for h in rng.choice([3, 6, 9], size=int(rng.integers(2, 4)), replace=False):
            slots[int(h)] = "subdials"
    if 3 not in slots and rng.random() < 0.4:
        slots[3] = "date window"
    free = [h for h in (6, 9) if h not in slots]
    if free and rng.random() < 0.18:
        slots[int(rng.choice(free))] = "clockwork"
    spec["slots"] = {str(k): v for k, v in sorted(slots.items())}

    if rng.random() < 0.5:  # indices: the minute track, a dashed ring (group mask)
        reg = w.ring(dial_r - 0.085, dial_r - 0.015)
        paint(reg & (np.mod(w.a * 30 / np.pi, 1) < 0.35), ink)
        add("indices", reg)
    pearls = rng.random() < 0.15
    hours = [h for h in range(12) if (h if h else 12) not in slots]
    if pearls:
        reg = np.zeros_like(w.r, bool)
        for h in hours:
            reg |= w.disc(*_clock_pos(h * np.pi / 6, 0.45), 0.07)
        shade = 225 + 25 * np.cos((w.u + w.v) * 60)
        add("pearl", reg, np.stack([shade, shade * 0.95, shade * 0.93], -1))
    elif rng.random() < 0.7:
        reg = np.zeros_like(w.r, bool)
        for h in hours:
            reg |= w.baton(h * np.pi / 6, 0.36, 0.53, 0.04 if h % 3 else 0.055)
        add("h-marker", reg, w.metal(tone, phase, aniso=0.3) if rng.random() < 0.5 else ink)
    if rng.random() < 0.35:
        reg = np.zeros_like(w.r, bool)
        for h in hours:
            reg |= w.disc(*_clock_pos(h * np.pi / 6, 0.3), 0.045)
        add("lumi", reg, (190, 235, 170))
    for h, what in slots.items():
        cu, cv = _clock_pos(h * np.pi / 6, 0.31)
        if what == "subdials":
            reg = w.disc(cu, cv, 0.16)
            col = np.where(w.disc(cu, cv, 0.13)[..., None], dcol * 0.6 + 40, np.asarray(ink))
            add("subdials", reg, col)
            paint(w.disc(cu, cv, 0.13) & (np.abs((w.u - cu) * 0.3 + (w.v - cv)) < 0.02) & (w.v < cv), ink)
        elif what == "date window":
            reg = (w.u >= 0.36) & (w.u <= 0.52) & (np.abs(w.v) <= 0.075)
            col = np.full((*w.r.shape, 3), 245.0)
            col[(w.u >= 0.41) & (w.u <= 0.47) & (np.abs(w.v) <= 0.04)] = 20
            add("date window", reg, col)
        else:  # open-heart movement: gold wheel with teeth and spokes
            reg = w.disc(cu, cv, 0.17)
            ang = np.arctan2(w.v - cv, w.u - cu)
            rr = np.hypot(w.u - cu, w.v - cv)
            gear = (rr < 0.13 + 0.02 * np.sign(np.cos(ang * 12))) & ((np.abs(np.cos(ang * 2)) < 0.25) | (rr > 0.1) | (rr < 0.03))
            col = np.where(gear[..., None], np.asarray((220, 180, 80), float), np.asarray((60, 50, 40), float))
            add("clockwork", reg, col)
    if rng.random() < 0.6:
        reg = (np.abs(w.u) <= 0.075 - 0.6 * np.clip(w.v + 0.38, 0, 1) * 0.12) & (w.v >= -0.38) & (w.v <= -0.26)
        add("logo", reg, (225, 190, 90) if tone != METAL_TONES["gold"] else (240, 240, 240))
    if rng.random() < 0.55:
        reg = (np.abs(w.u) <= 0.17) & (w.v >= -0.23) & (w.v <= -0.13)
        text = reg & (np.mod(w.v * 40, 1) < 0.55) & (np.cos(w.u * 70 + np.floor(w.v * 40)) > -0.3)
        paint(text, ink)
        add("print", reg)
    if rng.random() < 0.9:  # hands
        hcol = w.metal(tone, phase, aniso=0.3) if rng.random() < 0.5 else np.broadcast_to(ink, (*w.r.shape, 3))
        ah = rng.uniform(0, 2 * np.pi)
        am = ah + rng.choice([-1, 1]) * rng.uniform(0.6, np.pi)
        add("hour hand", w.baton(ah, -0.06, 0.36, 0.05, taper=0.5), hcol)
        add("minute hand", w.baton(am, -0.06, 0.56, 0.035, taper=0.5), hcol)
        if rng.random() < 0.6:
            asec = am + rng.uniform(0.5, 2 * np.pi - 0.5)
            red = (220, 40, 30) if rng.random() < 0.6 else ink
            add("second hand", w.baton(asec, -0.16, 0.58, 0.022), red)
        paint(w.disc(0, 0, 0.05), np.asarray(tone) * 0.8)
    if rng.random() < 0.6:  # crystal: glare over the whole glass
        reg = w.r < 0.70
        d = (w.u + w.v) * 0.7 - rng.uniform(-0.4, 0.2)
        glare = (np.abs(d) < 0.14) & reg
        _blend(paint, glare, (235, 240, 255), 0.3)
        add("crystal", reg)


def _blend(paint, region: np.ndarray, colour, alpha: float) -> None:
    """Translucent layer (the crystal's glare): mix ``colour`` into the canvas over ``region``."""
    img = paint.canvas
    img[region] = (1 - alpha) * img[region] + alpha * np.asarray(colour, np.float32)


def _render_back(w: _Watch, rng, tone, phase, paint, add, spec) -> None:
    """Case back: case ring, sealing gasket, caseback with screws and engraving, exhibition movement/rotor."""
    sealing = rng.random() < 0.5
    back_r = 0.80
    add("case", w.ring(0.86 if sealing else back_r, 1.0), w.metal(tone, phase, aniso=1.0))
    if sealing:
        add("sealing", w.ring(back_r, 0.86), (22, 22, 24))
    col = w.metal(tone, phase + 1.3, aniso=0.5) * (0.93 + 0.07 * np.cos(w.r * 120))[..., None]
    add("caseback", w.r < back_r, col)
    exhibit = rng.random() < 0.5
    if rng.random() < 0.5:
        reg = w.ring(0.55, 0.66)
        paint(reg & (np.mod(w.a * 40 / np.pi, 1) < 0.5) & (np.mod(w.r * 60, 1) < 0.6), np.asarray(tone) * 0.45)
        add("engraving", reg)
    if rng.random() < 0.5:
        n = int(rng.integers(4, 7))
        off = rng.uniform(0, np.pi)
        for k in range(n):
            cu, cv = _clock_pos(off + 2 * np.pi * k / n, 0.72)
            reg = w.disc(cu, cv, 0.055)
            col = np.where((np.abs((w.u - cu) - (w.v - cv)) < 0.012)[..., None], 40.0,
                           np.asarray(tone, float) * 0.6)
            add("screws", reg, col)
    if exhibit:
        reg = w.r < 0.48
        plate = 120 + 20 * np.cos(np.hypot(np.mod(w.u, 0.08) - 0.04, np.mod(w.v, 0.08) - 0.04) * 120)
        col = np.stack([plate, plate, plate * 1.02], -1)
        for k in range(3):
            cu, cv = _clock_pos(rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3))
            rr = np.hypot(w.u - cu, w.v - cv)
            ang = np.arctan2(w.v - cv, w.u - cu)
            gear = rr < 0.12 + 0.018 * np.sign(np.cos(ang * 14))
            col = np.where((gear & (rr > 0.025))[..., None], np.asarray((215, 175, 80), float), col)
        paint(w.ring(0.475, 0.49), (30, 30, 30))
        add("clockwork", reg, col)
        if rng.random() < 0.6:
            phi = rng.uniform(0, 2 * np.pi)
            half = np.cos(w.a - phi) > 0.05
            reg = (w.r < 0.46) & half
            rcol = w.metal(tone, phase + 0.5, aniso=0.6) * (0.9 + 0.1 * np.sign(np.cos(w.u * 40)))[..., None]
            add("rotor", reg, rcol)


def _derive_concepts(parts: dict[str, list[np.ndarray]], spec: dict) -> dict[str, list[np.ndarray]]:
    """Add the derived concepts: synonyms (same masks), compounds (variant only), hands, metal (union)."""
    out = dict(parts)
    for a, b in (("bezel", "lunette"), ("clockwork", "movement"), ("diamonds", "stones"), ("pearl", "pearls")):
        if a in out:
            out[b] = list(out[a])
    if "strap" in out:
        out["leather" if spec.get("strap") == "leather" else "metal strap"] = list(out["strap"])
    if "dial" in out and spec.get("dial") == "metal":
        out["metal dial"] = list(out["dial"])
    hands = [m for c in ("hour hand", "minute hand", "second hand") for m in out.get(c, [])]
    if hands:
        out["hands"] = hands
    metal = [m for c in ("case", "lugs") for m in out.get(c, [])]
    metal += out.get("bezel", []) if spec.get("bezel") == "metal" else []
    metal += out.get("rehaut", []) if spec.get("rehaut") == "metal" else []
    if metal:
        out["metal"] = [np.logical_or.reduce(metal)]
    unknown = set(out) - set(WATCH_CONCEPTS)
    assert not unknown, f"renderer produced concepts outside WATCH_CONCEPTS: {unknown}"
    return {c: out[c] for c in WATCH_CONCEPTS if c in out}


# =========================================================================== open-vocab world
@dataclass
class _Obj:
    colour: str
    pattern: str
    mask: np.ndarray  # hi-res full (amodal) region


def _window(cx: float, cy: float, half: float) -> tuple[slice, slice]:
    """Hi-res index window covering the square of half-size ``half`` (112-px units) around (cx, cy)."""
    s, n = SUPERSAMPLE, IMAGE_SIZE * SUPERSAMPLE
    y0, y1 = max(0, int((cy - half) * s)), min(n, int(math.ceil((cy + half) * s)))
    x0, x1 = max(0, int((cx - half) * s)), min(n, int(math.ceil((cx + half) * s)))
    return slice(y0, y1), slice(x0, x1)


def _shape_region(rng: np.random.Generator, cx: float, cy: float, diam: float) -> np.ndarray:
    """A random shape (harmonic blob, star, ellipse or rounded box) of at most ``diam`` px, as a full-size
    hi-res bool mask computed in its window only. Shape is a nuisance in the open-vocab world."""
    win = _window(cx, cy, diam / 2 + 1)
    th = rng.uniform(0, np.pi)
    dx, dy = _X[win] - cx, _Y[win] - cy
    x = (dx * np.cos(th) + dy * np.sin(th)) / (diam / 2)
    y = (-dx * np.sin(th) + dy * np.cos(th)) / (diam / 2)
    y = y / rng.uniform(0.65, 1.0)
    out = np.zeros(_X.shape, bool)
    if rng.random() < 0.3:  # superellipse: box .. rounded box
        p = rng.uniform(2.5, 6)
        out[win] = np.abs(x) ** p + np.abs(y) ** p <= 1
        return out
    ang, rad = np.arctan2(y, x), np.hypot(x, y)
    bound = np.ones_like(rad)
    for k in rng.choice([2, 3, 4, 5], size=2, replace=False):
        bound += rng.uniform(0.0, 0.22) * np.cos(k * ang + rng.uniform(0, 6.3))
    out[win] = rad <= bound / bound.max()
    return out


def _pattern_colour(rng: np.random.Generator, colour: str, pattern: str, cx: float, cy: float,
                    win: tuple[slice, slice]) -> np.ndarray:
    """Hi-res RGB (over ``win``) of a (colour, pattern) texture: dark marks of the same hue, period 8-11 px."""
    X, Y = _X[win], _Y[win]
    base = np.asarray(COLOURS[colour], float)
    dark = base * 0.28
    per = rng.uniform(8, 11)
    th = rng.uniform(0, np.pi)
    x = ((X - cx) * np.cos(th) + (Y - cy) * np.sin(th)) / per + rng.uniform(0, 1)
    y = (-(X - cx) * np.sin(th) + (Y - cy) * np.cos(th)) / per + rng.uniform(0, 1)
    if pattern == "plain":
        marks = np.zeros_like(x, bool)
    elif pattern == "striped":
        marks = np.mod(x, 1) < 0.5
    elif pattern == "checkered":
        marks = (np.floor(x * 1.6) + np.floor(y * 1.6)) % 2 == 0
    elif pattern == "dotted":
        xx, yy = np.mod(x, 1) - 0.5, np.mod(y + 0.5 * (np.floor(x) % 2), 1) - 0.5
        marks = xx ** 2 + yy ** 2 < 0.27 ** 2
    elif pattern == "gridded":
        marks = (np.abs(np.mod(x, 1) - 0.5) < 0.11) | (np.abs(np.mod(y, 1) - 0.5) < 0.11)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    shade = 0.88 + 0.12 * np.clip((X - cx) * 0.02 + 0.5, 0, 1)
    col = np.where(marks[..., None], dark[None, None, :], base[None, None, :]) * shade[..., None]
    return col


@dataclass(frozen=True)
class _SceneProfile:
    """How a scene is sampled (SA-Co subset properties vary these)."""

    n_cats: tuple[int, int] = (1, 4)
    inst: tuple[int, int] = (1, 2)
    diam: tuple[float, float] = (34, 56)
    clutter: bool = False
    shared_attr: bool = False
    same_colour: bool = False


PROFILES: dict[str, _SceneProfile] = {
    "default": _SceneProfile(),
    "metaclip_nps": _SceneProfile(n_cats=(1, 3)),
    "sa1b_nps": _SceneProfile(n_cats=(3, 4), diam=(28, 44), clutter=True),
    "attributes": _SceneProfile(n_cats=(2, 3), shared_attr=True),
    "crowded": _SceneProfile(n_cats=(1, 2), inst=(4, 7), diam=(28, 36)),
    "wiki_common": _SceneProfile(n_cats=(1, 2), diam=(46, 62)),
    "fg_food": _SceneProfile(n_cats=(2, 3), same_colour=True),
    "fg_sports_equipment": _SceneProfile(n_cats=(2, 3), diam=(28, 34)),
}


def _sample_categories(rng: np.random.Generator, prof: _SceneProfile) -> list[tuple[str, str]]:
    n = int(rng.integers(prof.n_cats[0], prof.n_cats[1] + 1))
    cats = ov_categories()
    if prof.same_colour:
        col = str(rng.choice(list(COLOURS)))
        pats = rng.choice(PATTERNS, size=min(n, len(PATTERNS)), replace=False)
        return [(col, str(p)) for p in pats]
    if prof.shared_attr:
        c0 = cats[int(rng.integers(len(cats)))]
        out = [c0]
        while len(out) < n:
            c = cats[int(rng.integers(len(cats)))]
            if c not in out and (c[0] == c0[0] or c[1] == c0[1]):
                out.append(c)
        return out
    idx = rng.choice(len(cats), size=n, replace=False)
    return [cats[i] for i in idx]


def render_scene(rng: np.random.Generator, prof: _SceneProfile) -> tuple[np.ndarray, list[tuple[tuple[str, str], np.ndarray]]]:
    """Render one open-vocab scene: (uint8 image, [((colour, pattern), visible bool mask 112x112)]).

    Objects are placed so each keeps >= 60 % of its area visible; masks are the visible (modal) regions.
    Serves Post 02 (base pre-training, LVIS-like replay/val, SA-Co/Gold-like eval).
    """
    img = _background(rng, rng.uniform(0.0, 0.25))
    if prof.clutter:  # unnamed distractors: low-saturation blobs
        for _ in range(int(rng.integers(3, 7))):
            reg = _shape_region(rng, rng.uniform(0, IMAGE_SIZE), rng.uniform(0, IMAGE_SIZE), rng.uniform(15, 40))
            g = rng.uniform(40, 220)
            img[reg] = np.asarray([g, g * rng.uniform(0.85, 1.0), g * rng.uniform(0.7, 0.95)])
    objs: list[_Obj] = []
    placed: list[tuple[float, float, float]] = []
    occupied = np.zeros(_X.shape, bool)
    for cat in _sample_categories(rng, prof):
        for _ in range(int(rng.integers(prof.inst[0], prof.inst[1] + 1))):
            for _try in range(25):
                d = rng.uniform(*prof.diam)
                m = d * 0.35
                cx, cy = rng.uniform(m, IMAGE_SIZE - m), rng.uniform(m, IMAGE_SIZE - m)
                if any(math.hypot(cx - ox, cy - oy) < 0.3 * (d + od) for ox, oy, od in placed):
                    continue  # cheap reject before rasterising
                reg = _shape_region(rng, cx, cy, d)
                win = _window(cx, cy, d / 2 + 1)
                local = reg[win]
                area = np.count_nonzero(local)
                if area == 0 or np.count_nonzero(local & occupied[win]) > 0.25 * area:
                    continue
                img[win][local] = _pattern_colour(rng, *cat, cx, cy, win)[local]
                for o in objs:  # the new object occludes what is beneath
                    o.mask[win] &= ~local
                objs.append(_Obj(cat[0], cat[1], reg))
                placed.append((cx, cy, d))
                occupied[win] |= local
                break
    image = np.clip(_downsample(img) + 0.5, 0, 255).astype(np.uint8)
    out = []
    for o in objs:
        lo = _downsample(o.mask) >= 0.5
        if np.count_nonzero(lo) >= 30:
            out.append(((o.colour, o.pattern), lo))
    return image, out


def negative_candidates(present: Iterable[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Open-vocab negatives of graded difficulty for a scene holding the categories ``present``.

    ``absent``: neither the colour nor the pattern is in the image; ``attribute_shared``: exactly one of them
    is; ``binding``: both are, but never on the same object. (Post 02 §1, the pilot's negative curriculum.)
    """
    present = set(present)
    cols, pats = {c for c, _ in present}, {p for _, p in present}
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in NEG_TYPES_OV}
    for c, p in ov_categories():
        if (c, p) in present:
            continue
        n = (c in cols) + (p in pats)
        out[("absent", "attribute_shared", "binding")[n]].append((c, p))
    return out


# =========================================================================== split writers
def _coco_doc(description: str, categories: list[dict]) -> dict:
    return {"info": {"description": description, "version": "synthetic", "generator_version": GENERATOR_VERSION},
            "licenses": [], "images": [], "annotations": [], "categories": categories}


def _coco_ann(doc: dict, image_id: int, category_id: int, mask: np.ndarray, normalised: bool = False) -> None:
    h, w = mask.shape
    box, area = _bbox(mask), float(mask.sum())
    if normalised:  # SA-Co/Gold stores bbox and area normalised by the image size
        box = [box[0] / w, box[1] / h, box[2] / w, box[3] / h]
        area = area / (h * w)
    doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": category_id,
                               "segmentation": encode_rle(mask), "bbox": box, "area": area, "iscrowd": 0,
                               **({"source": "synthetic"} if normalised else {})})


def _saco_pair(doc: dict, file_name: str, phrase: str, masks: list[np.ndarray], *, world: str, subset: str | None,
               neg_type: str | None, queried_category: int) -> None:
    pid = 10_000_000 + len(doc["images"])
    doc["images"].append({"id": pid, "file_name": file_name, "text_input": phrase, "width": IMAGE_SIZE,
                          "height": IMAGE_SIZE, "queried_category": str(queried_category),
                          "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1, "neg_type": neg_type,
                          "subset": subset, "world": world})
    for m in masks:
        _coco_ann(doc, pid, 1, m, normalised=True)


SACO_CATEGORIES = [{"supercategory": "object", "id": 1, "name": "object"}]
WATCH_CATEGORIES = [{"supercategory": "watch", "id": i + 1, "name": c} for i, c in enumerate(WATCH_CONCEPTS)]
OV_CATEGORIES = [{"supercategory": "object", "id": i + 1, "name": ov_phrase(c, p), "colour": c, "pattern": p}
                 for i, (c, p) in enumerate(ov_categories())]
_OV_ID = {(c, p): i + 1 for i, (c, p) in enumerate(ov_categories())}


class _Writer:
    """Collects one split's images on disk and its JSON document."""

    def __init__(self, root: Path, split: str):
        self.root, self.split = root, split
        (root / "images" / split).mkdir(parents=True, exist_ok=True)

    def image(self, index: int, img: np.ndarray) -> str:
        rel = f"images/{self.split}/{index:06d}.png"
        (self.root / rel).write_bytes(_png(img))
        return rel


def _gen_watch_coco(root: Path, split: str, n: int, seed: int, keep: list | None = None) -> dict:
    """Watch train/test split: COCO instances over the 37 concepts (Post 01's watch task)."""
    doc = _coco_doc(f"synthetic watch world, {split}", WATCH_CATEGORIES)
    wr = _Writer(root, split)
    cid = {c: i + 1 for i, c in enumerate(WATCH_CONCEPTS)}
    for i in range(n):
        img, parts, spec = render_watch(_rng(seed, split, i))
        iid = i + 1
        doc["images"].append({"id": iid, "file_name": wr.image(i, img), "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                              "watch": spec})
        for c, masks in parts.items():
            for m in masks:
                _coco_ann(doc, iid, cid[c], m)
        if keep is not None:
            keep.append((img, parts))
    return doc


def _gen_watch_negatives(root: Path, rendered: list, per_patch: int, seed: int) -> dict:
    """Post 02 §3 negatives corpus: quadrant patches (resized to 112) x components absent from the patch."""
    doc = _coco_doc("synthetic watch negatives corpus (quadrant patches)", SACO_CATEGORIES)
    wr = _Writer(root, "watch_negatives")
    h = IMAGE_SIZE // 2
    k = 0
    for i, (img, parts) in enumerate(rendered):
        for q in range(4):
            y0, x0 = (q // 2) * h, (q % 2) * h
            patch = np.asarray(Image.fromarray(img[y0:y0 + h, x0:x0 + h]).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                                 Image.BILINEAR))
            absent = [c for c in NEG_CORPUS_CONCEPTS
                      if not any(m[y0:y0 + h, x0:x0 + h].any() for m in parts.get(c, []))]
            if not absent:
                continue
            rng = _rng(seed, "watch_negatives", i, q)
            chosen = rng.choice(absent, size=min(per_patch, len(absent)), replace=False)
            fn = wr.image(k, patch)
            k += 1
            for c in chosen:
                _saco_pair(doc, fn, str(c), [], world="watch", subset="quadrant_patch",
                           neg_type="outside_patch" if c in parts else "absent",
                           queried_category=WATCH_CONCEPTS.index(str(c)) + 1)
    return doc


def _gen_watch_pretrain(root: Path, n: int, seed: int) -> dict:
    """Watch pairs for the base's pre-training mix: only WATCH_PRETRAIN_CONCEPTS, positives + absent negatives."""
    doc = _coco_doc("synthetic watch world, pre-training pool (disjoint from train/test)", SACO_CATEGORIES)
    wr = _Writer(root, "watch_pretrain")
    for i in range(n):
        rng = _rng(seed, "watch_pretrain", i)
        img, parts, _ = render_watch(rng)
        fn = wr.image(i, img)
        pos = [c for c in WATCH_PRETRAIN_CONCEPTS if c in parts]
        neg = [c for c in WATCH_PRETRAIN_CONCEPTS if c not in parts]
        for c in pos:
            _saco_pair(doc, fn, c, parts[c], world="watch", subset="pretrain", neg_type=None,
                       queried_category=WATCH_CONCEPTS.index(c) + 1)
        for c in rng.choice(neg, size=min(3, len(neg)), replace=False) if neg else []:
            _saco_pair(doc, fn, str(c), [], world="watch", subset="pretrain", neg_type="absent",
                       queried_category=WATCH_CONCEPTS.index(str(c)) + 1)
    return doc


def _group(objs: list) -> dict[tuple[str, str], list[np.ndarray]]:
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for cat, m in objs:
        out.setdefault(cat, []).append(m)
    return out


def _gen_ov_pretrain(root: Path, lo: int, hi: int, seed: int) -> dict:
    """Base pre-training split (images lo..hi-1): every present category + one negative of each feasible type."""
    doc = _coco_doc("synthetic open-vocab world, pre-training pairs", SACO_CATEGORIES)
    wr = _Writer(root, "ov_pretrain")
    for i in range(lo, hi):
        rng = _rng(seed, "ov_pretrain", i)
        img, objs = render_scene(rng, PROFILES["default"])
        if not objs:
            continue
        fn = wr.image(i, img)
        groups = _group(objs)
        for cat, masks in groups.items():
            _saco_pair(doc, fn, ov_phrase(*cat), masks, world="open_vocab", subset="pretrain", neg_type=None,
                       queried_category=_OV_ID[cat])
        for t, cands in negative_candidates(groups).items():
            if cands:
                cat = cands[int(rng.integers(len(cands)))]
                _saco_pair(doc, fn, ov_phrase(*cat), [], world="open_vocab", subset="pretrain", neg_type=t,
                           queried_category=_OV_ID[cat])
    return doc


def _gen_lvis(root: Path, split: str, lo: int, hi: int, seed: int) -> dict:
    """LVIS-like positive-only split, images lo..hi-1 (COCO instances over the 40 categories;
    ``neg_category_ids`` as LVIS has them)."""
    doc = _coco_doc(f"synthetic open-vocab world, LVIS-like {split}", OV_CATEGORIES)
    wr = _Writer(root, split)
    for i in range(lo, hi):
        rng = _rng(seed, split, i)
        img, objs = render_scene(rng, PROFILES["default"])
        if not objs:
            continue
        groups = _group(objs)
        absent = negative_candidates(groups)["absent"]
        negs = [_OV_ID[absent[j]] for j in rng.choice(len(absent), size=min(3, len(absent)), replace=False)] if absent else []
        doc["images"].append({"id": i + 1, "file_name": wr.image(i, img), "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                              "neg_category_ids": sorted(negs), "not_exhaustive_category_ids": []})
        for cat, masks in groups.items():
            for m in masks:
                _coco_ann(doc, i + 1, _OV_ID[cat], m)
    return doc


def _gen_saco(root: Path, n_per_subset: int, seed: int, hard_share: float = 0.2) -> dict[str, dict]:
    """SA-Co/Gold-like eval: per subset, every present category as a positive and as many negatives,
    ~80 % ``absent`` (like SA-Co's human-written negatives) and ~20 % hard (attribute_shared / binding)."""
    docs = {}
    wr = _Writer(root, "saco_gold")
    k = 0
    for subset, prop in SACO_SUBSETS.items():
        doc = _coco_doc(f"SA-Co/Gold-like synthetic subset {subset}: {prop}", SACO_CATEGORIES)
        for i in range(n_per_subset):
            rng = _rng(seed, "saco_gold", subset, i)
            img, objs = render_scene(rng, PROFILES[subset])
            if not objs:
                continue
            fn = wr.image(k, img)
            k += 1
            groups = _group(objs)
            for cat, masks in groups.items():
                _saco_pair(doc, fn, ov_phrase(*cat), masks, world="open_vocab", subset=subset, neg_type=None,
                           queried_category=_OV_ID[cat])
            cands = negative_candidates(groups)
            used: set = set()
            for _ in range(len(groups)):
                hard = rng.random() < hard_share
                order = (["binding", "attribute_shared"] if rng.random() < 0.5 else ["attribute_shared", "binding"])
                for t in (order + ["absent"]) if hard else ["absent"] + order:
                    left = [c for c in cands[t] if c not in used]
                    if left:
                        cat = left[int(rng.integers(len(left)))]
                        used.add(cat)
                        _saco_pair(doc, fn, ov_phrase(*cat), [], world="open_vocab", subset=subset, neg_type=t,
                                   queried_category=_OV_ID[cat])
                        break
        docs[subset] = doc
    return docs


def _merge_saco(docs: Iterable[dict], description: str = "SA-Co/Gold-like synthetic eval, all 7 subsets") -> dict:
    """One combined SA-Co-style file (pair ids renumbered; each pair keeps its ``subset``)."""
    out = _coco_doc(description, SACO_CATEGORIES)
    for doc in docs:
        remap = {}
        for im in doc["images"]:
            new = 10_000_000 + len(out["images"])
            remap[im["id"]] = new
            out["images"].append({**im, "id": new})
        for a in doc["annotations"]:
            out["annotations"].append({**a, "id": len(out["annotations"]) + 1, "image_id": remap[a["image_id"]]})
    return out


# =========================================================================== cache + entry points
def config_hash(seed: int, sizes: WorldSizes) -> str:
    """Hash of everything that determines the generated files (sizes, seed, generator version)."""
    blob = json.dumps({"seed": seed, "sizes": asdict(sizes), "version": GENERATOR_VERSION,
                       "vocab": vocabulary()}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def worlds_hash(scale: str = "tiny", seed: int = 0) -> str:
    """Config hash of the worlds of ``scale`` (training runs include it in their own hash)."""
    if scale not in SCALES:
        raise ValueError(f"no worlds for scale {scale!r}; known: {sorted(SCALES)}")
    return config_hash(seed, SCALES[scale])


def vocabulary_phrases() -> list[str]:
    """Every phrase of both worlds: the 37 watch concepts and the 40 open-vocab category phrases."""
    return list(WATCH_CONCEPTS) + [ov_phrase(c, p) for c, p in ov_categories()]


def _split_files() -> list[str]:
    return [f"{s}.json" for s in SPLITS] + [f"saco_gold_{s}.json" for s in SACO_SUBSETS]


def _paths(d: Path) -> dict[str, Path]:
    out = {s: d / f"{s}.json" for s in SPLITS}
    out.update({f"saco_gold_{s}": d / f"saco_gold_{s}.json" for s in SACO_SUBSETS})
    return out


def _concat_coco(docs: list[dict]) -> dict:
    """Concatenate COCO chunks of one split (image ids are global already; annotation ids renumbered)."""
    out = {**docs[0], "images": [], "annotations": []}
    for d in docs:
        out["images"] += d["images"]
        out["annotations"] += [{**a, "id": len(out["annotations"]) + k + 1} for k, a in enumerate(d["annotations"])]
    return out


def _job(job: tuple, out_dir: Path, seed: int, sizes: WorldSizes) -> dict[str, dict]:
    """One independent unit of generation (run in a worker process); returns {split: JSON doc (chunk)}."""
    kind = job[0]
    if kind == "watch":
        rendered: list = []
        docs = {"watch_train": _gen_watch_coco(out_dir, "watch_train", sizes.watch_train, seed, keep=rendered),
                "watch_test": _gen_watch_coco(out_dir, "watch_test", sizes.watch_test, seed)}
        docs["watch_negatives"] = _gen_watch_negatives(out_dir, rendered, sizes.negatives_per_patch, seed)
        docs["watch_pretrain"] = _gen_watch_pretrain(out_dir, sizes.watch_pretrain, seed)
        return docs
    if kind == "ov_pretrain":
        return {"ov_pretrain": _gen_ov_pretrain(out_dir, job[1], job[2], seed)}
    if kind in ("lvis_train", "lvis_val"):
        return {kind: _gen_lvis(out_dir, kind, job[1], job[2], seed)}
    if kind == "saco":
        return {f"saco_gold_{s}": d for s, d in _gen_saco(out_dir, sizes.saco_per_subset, seed).items()}
    raise ValueError(kind)


def _chunks(kind: str, n: int, size: int) -> list[tuple]:
    return [(kind, lo, min(n, lo + size)) for lo in range(0, n, size)] or [(kind, 0, 0)]


def generate(out_dir: Path, seed: int, sizes: WorldSizes, workers: int | None = None) -> dict[str, Path]:
    """Generate every split into ``out_dir`` (images + JSON, JSON written atomically); returns the paths.

    Work is cut into independent jobs (each image has its own seeded generator, so the output does not
    depend on ``workers``); ``workers`` defaults to min(2, CPUs), env ``WORLDS_WORKERS`` overrides.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [("watch",), ("saco",)] + _chunks("ov_pretrain", sizes.ov_pretrain, 250) \
        + _chunks("lvis_train", sizes.lvis_train, 300) + _chunks("lvis_val", sizes.lvis_val, 300)
    if workers is None:  # a pool only pays off for real sizes
        big = sum(asdict(sizes).values()) > 200
        workers = int(os.environ.get("WORLDS_WORKERS", min(2, os.cpu_count() or 1))) if big else 1
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_job, jobs, [out_dir] * len(jobs), [seed] * len(jobs), [sizes] * len(jobs)))
    else:
        results = [_job(j, out_dir, seed, sizes) for j in jobs]
    parts: dict[str, list[dict]] = {}
    for r in results:
        for k, d in r.items():
            parts.setdefault(k, []).append(d)
    docs = {k: v[0] for k, v in parts.items() if len(v) == 1}
    docs["ov_pretrain"] = _merge_saco(parts["ov_pretrain"], parts["ov_pretrain"][0]["info"]["description"])
    for k in ("lvis_train", "lvis_val"):
        docs[k] = _concat_coco(parts[k])
    docs["saco_gold"] = _merge_saco([docs[f"saco_gold_{s}"] for s in SACO_SUBSETS])
    paths = _paths(out_dir)
    for name, doc in docs.items():
        atomic_write_json(paths[name], doc)
    atomic_write_json(out_dir / "manifest.json", {
        "config_hash": config_hash(seed, sizes), "seed": seed, "sizes": asdict(sizes),
        "generator_version": GENERATOR_VERSION, "files": {k: p.name for k, p in paths.items()},
        "generation_wall_s": round(time.time() - t0, 2), "workers": workers})
    return paths


def ensure_worlds(seed: int = 0, root: str | Path = DATA / "worlds", scale: str = "tiny",
                  sizes: WorldSizes | None = None, force: bool = False) -> dict[str, Path]:
    """Generate (or reuse, when the manifest's config hash matches) all splits; returns {split: JSON path}.

    Keys: watch_train, watch_test, watch_negatives, watch_pretrain, ov_pretrain, lvis_train, lvis_val,
    saco_gold (all 7 subsets, ``subset`` field per pair) and saco_gold_<subset> (one file per subset).
    Generation happens in a temporary sibling directory that is renamed into place, so a concurrent or
    interrupted run never leaves a half-written world behind.
    """
    if sizes is None:
        if scale not in SCALES:
            raise ValueError(f"unknown world scale {scale!r}; expected one of {tuple(SCALES)}")
        sizes = SCALES[scale]
    root = Path(root)
    want = config_hash(seed, sizes)
    name = scale if sizes == SCALES.get(scale) else f"custom-{want}"
    target = root / f"{name}-seed{seed}"
    if not force and _valid(target, want):
        return _paths(target)
    from common.io import exclusive

    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root / f".{target.name}.lock"):  # one generator at a time (as training runs share one lock)
        return _generate_into(target, root, want, seed, sizes, force)


def _generate_into(target: Path, root: Path, want: str, seed: int, sizes: WorldSizes, force: bool) -> dict[str, Path]:
    tmp = root / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, seed, sizes)
    if not force and _valid(target, want):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return _paths(target)
    if target.exists():
        old = root / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(target)
    return _paths(target)


def _valid(target: Path, want: str) -> bool:
    man = target / "manifest.json"
    if not man.exists():
        return False
    try:
        ok = read_json(man).get("config_hash") == want
    except ValueError:
        return False
    return ok and all((target / f).exists() for f in _split_files())


def pretrain_mix(paths: dict[str, Path], share: float = 0.05, seed: int = 0):
    """Base pre-training pairs: ``ov_pretrain`` plus whole watch images from ``watch_pretrain`` so that
    about ``share`` of all pairs are watch pairs (a subset of concepts, with negatives). Post 02 / pilot:
    the base should see the watch domain a little. The watch test split is never touched.
    """
    from common.data import PairDataset, load_pairs

    if not 0 <= share < 1:
        raise ValueError(f"pretrain_mix share must be in [0, 1), got {share}")
    ov = load_pairs(paths["ov_pretrain"])
    watch = load_pairs(paths["watch_pretrain"])
    want = int(round(share / (1 - share) * len(ov)))
    groups = list(watch.by_image().values())
    order = np.random.default_rng(seed).permutation(len(groups))
    chosen: list = []
    for i in order:
        if len(chosen) >= want:
            break
        chosen.extend(groups[i])
    return PairDataset.concat([ov, watch.subset(chosen)], name=f"pretrain_mix(share={share})")


# =========================================================================== contact sheets + CLI
def _overlay(img: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Dim everything outside the GT masks and outline each instance (readable on any object colour)."""
    out = img.astype(float)
    if not masks:
        return img
    union = np.logical_or.reduce(masks)
    out[~union] = out[~union] * 0.35
    palette = [(255, 255, 255), (255, 235, 0), (0, 255, 255), (255, 0, 255)]
    for i, m in enumerate(masks):
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = palette[i % len(palette)]
    return out.astype(np.uint8)


def contact_sheet(ds, out_png: Path, title: str, n: int = 24, cols: int = 6, seed: int = 0,
                  pick: Callable | None = None) -> Path:
    """One PNG of ``n`` pairs of ``ds``: image with GT masks overlaid, phrase (and negative type) as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = pick(ds) if pick else list(np.random.default_rng(seed).permutation(len(ds))[:n])
    rows = max(1, math.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.45, rows * 1.6))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), idx):
        p = ds[int(i)]
        ax.imshow(_overlay(ds.image(p), list(ds.gt_masks(p))))
        label = p.phrase if p.neg_type is None else f"{p.phrase}\n[neg: {p.neg_type}]"
        ax.set_title(label, fontsize=5.5, color="black" if p.neg_type is None else "firebrick")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return atomic_write_bytes(out_png, buf.getvalue())


def _watch_concepts_pick(ds) -> list[int]:
    """All concepts of the richest front-view image and of the richest back-view image (one panel each)."""
    groups = ds.by_image()
    best = sorted(groups.values(), key=len, reverse=True)
    out: list[int] = []
    index = {id(p): i for i, p in enumerate(ds)}
    seen: set = set()
    for g in best:
        for p in g:
            if p.phrase not in seen:
                seen.add(p.phrase)
                out.append(index[id(p)])
        if len(seen) == len(WATCH_CONCEPTS):
            break
    return sorted(out, key=lambda i: WATCH_CONCEPTS.index(ds[i].phrase))


def write_contact_sheets(paths: dict[str, Path], out_dir: Path = RESULTS / "worlds") -> list[Path]:
    """Contact sheets: what the model is trained and evaluated on, one PNG per world/use."""
    from common.data import load_pairs

    wt = load_pairs(paths["watch_train"])
    out = [contact_sheet(wt, out_dir / "watch_concepts.png", "watch world: every concept (GT masks)", cols=8,
                         pick=_watch_concepts_pick),
           contact_sheet(wt, out_dir / "watch_train.png", "watch world, train: random (image, concept) tasks"),
           contact_sheet(load_pairs(paths["watch_negatives"]), out_dir / "watch_negatives.png",
                         "watch negatives corpus: quadrant patches x absent components (no masks)"),
           contact_sheet(load_pairs(paths["ov_pretrain"]), out_dir / "ov_pretrain.png",
                         "open-vocab pre-training: positives and typed negatives"),
           contact_sheet(load_pairs(paths["lvis_train"]), out_dir / "lvis_train.png", "LVIS-like train (positives)")]
    saco = load_pairs(paths["saco_gold"])

    def per_subset(ds) -> list[int]:
        idx = []
        for s in SACO_SUBSETS:
            mine = [i for i, p in enumerate(ds) if p.subset == s]
            pos = [i for i in mine if ds[i].neg_type is None][:4]
            neg = [i for i in mine if ds[i].neg_type is not None][:2]
            idx += (pos + neg + [-1] * 6)[:6]
        return [i for i in idx if i >= 0]

    out.append(contact_sheet(saco, out_dir / "saco_gold.png",
                             "SA-Co/Gold-like eval: one row per subset (" + ", ".join(SACO_SUBSETS) + ")",
                             pick=per_subset))
    return out


def split_stats(paths: dict[str, Path]) -> dict[str, dict]:
    """Images, pairs, positives and negatives by type for every split (what the CLI prints)."""
    from common.data import load_pairs

    return {k: load_pairs(p).summary() for k, p in paths.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", choices=tuple(SCALES), default="tiny")
    ap.add_argument("--root", type=Path, default=DATA / "worlds")
    ap.add_argument("--force", action="store_true", help="regenerate even if the cache is valid")
    ap.add_argument("--contact-sheets", action="store_true", help="write results/worlds/*.png")
    ap.add_argument("--sheets-dir", type=Path, default=RESULTS / "worlds")
    args = ap.parse_args(argv)
    t0 = time.time()
    paths = ensure_worlds(seed=args.seed, root=args.root, scale=args.scale, force=args.force)
    man = read_json(next(iter(paths.values())).parent / "manifest.json")
    print(f"worlds: {next(iter(paths.values())).parent}  (hash {man['config_hash']}, "
          f"generation {man['generation_wall_s']} s, this call {time.time() - t0:.1f} s)")
    print(f"{'split':34s} {'images':>6s} {'pairs':>6s} {'pos':>6s} {'neg':>6s}  negatives by type")
    for k, s in split_stats(paths).items():
        types = ", ".join(f"{t}={n}" for t, n in s["neg_types"].items())
        print(f"{k:34s} {s['images']:6d} {s['pairs']:6d} {s['positives']:6d} {s['negatives']:6d}  {types}")
    if args.contact_sheets:
        for p in write_contact_sheets(paths, args.sheets_dir):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
