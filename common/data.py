"""One loader, one interface: (image, phrase) pairs from COCO-instances or SA-Co/Gold-style JSON.

``load_pairs(path)`` auto-detects the format and returns a :class:`PairDataset` of :class:`Pair`:

- **COCO instances** (the watch task of Post 01, LVIS replay/val of Post 02, SAM3-LoRA's training data):
  every (image, category present) is a positive pair, phrase = category name, masks = that category's
  instances. ``negatives="absent_categories"`` adds one negative pair per category absent from the image
  (LVIS files: the image's verified ``neg_category_ids`` instead). LVIS's ``not_exhaustive_category_ids``
  set ``is_exhaustive`` False.
- **SA-Co/Gold style** (Post 02's open-vocab eval): each ``images`` entry is an image-phrase pair
  (``text_input``, ``is_instance_exhaustive``, ``file_name``); annotations point at the pair id; a pair
  without annotations is a negative. ``bbox`` may be normalised (the real files are); Pair boxes are
  always recomputed in pixels from the masks. Optional ``neg_type`` / ``subset`` / ``world`` fields (the
  synthetic worlds write them) are carried through; real negatives get ``neg_type="unlabelled"``.

Segmentations: compressed RLE (``counts`` str or bytes), uncompressed RLE (``counts`` list) and polygons are
accepted and normalised to compressed RLE with str counts (pycocotools). Bad input stops with a
:class:`DataFormatError` naming the file and the field.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from common.io import atomic_write_bytes, read_json


class DataFormatError(ValueError):
    """A dataset file is malformed; the message names the file and the field."""


@dataclass
class Pair:
    """One (image, phrase) datapoint. ``masks`` empty and ``neg_type`` set means a negative pair."""

    pair_id: str
    image_id: int | str
    file_name: str
    phrase: str
    masks: list[dict]  # COCO RLE dicts, counts as str, size [h, w]
    boxes: list[list[float]]  # xywh in pixels, one per mask
    is_exhaustive: bool
    neg_type: str | None
    world: str | None = None
    subset: str | None = None
    category_id: int | None = None
    height: int = 0
    width: int = 0
    image_root: str = ""
    source: str = ""  # the JSON file it came from
    iscrowd: tuple[int, ...] = ()  # COCO ``iscrowd`` per mask (empty: none is a crowd region)

    @property
    def crowd_flags(self) -> list[int]:
        """``iscrowd`` per mask: evaluation drops crowd GT as Meta's SA-Co evaluator does (``common.metrics``)."""
        return list(self.iscrowd) or [0] * len(self.masks)

    @property
    def is_positive(self) -> bool:
        return len(self.masks) > 0

    @property
    def is_negative(self) -> bool:
        return len(self.masks) == 0

    @property
    def path(self) -> Path:
        return Path(self.image_root) / self.file_name


class PairDataset:
    """A list of pairs with cached image decoding and mask rasterisation.

    Views made by :meth:`positives`, :meth:`negatives`, :meth:`subset` share the image cache.
    """

    def __init__(self, pairs: Sequence[Pair], name: str = "", _cache: dict | None = None):
        self.pairs = list(pairs)
        self.name = name
        self._cache: dict[str, np.ndarray] = {} if _cache is None else _cache

    # -- sequence protocol
    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Pair:
        return self.pairs[i]

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        s = self.summary()
        return f"PairDataset({self.name!r}: {s['pairs']} pairs, {s['images']} images, {s['negatives']} negatives)"

    # -- views
    def subset(self, pairs: Iterable[Pair], name: str | None = None) -> "PairDataset":
        return PairDataset(list(pairs), name or self.name, self._cache)

    def positives(self) -> "PairDataset":
        """The pairs with at least one GT mask."""
        return self.subset([p for p in self.pairs if p.is_positive], f"{self.name}:positives")

    def negatives(self) -> "PairDataset":
        """The pairs with no GT mask (the phrase is absent from the image)."""
        return self.subset([p for p in self.pairs if p.is_negative], f"{self.name}:negatives")

    def phrases(self) -> list[str]:
        """Sorted distinct phrases."""
        return sorted({p.phrase for p in self.pairs})

    def by_image(self) -> dict[str, list[Pair]]:
        """Pairs grouped per image file (insertion order), for one vision forward shared by several phrases."""
        out: dict[str, list[Pair]] = {}
        for p in self.pairs:
            out.setdefault(str(p.path), []).append(p)
        return out

    @staticmethod
    def concat(parts: Sequence["PairDataset"], name: str = "") -> "PairDataset":
        """Concatenate datasets (images may come from different roots); caches are merged."""
        cache: dict = {}
        for d in parts:
            cache.update(d._cache)
        ds = PairDataset([p for d in parts for p in d.pairs], name, cache)
        for d in parts:
            d._cache = cache
        return ds

    def summary(self) -> dict[str, Any]:
        """Counts: images, pairs, positives, negatives and negatives by type."""
        negs = Counter(p.neg_type or "unlabelled" for p in self.pairs if p.is_negative)
        return {"images": len({str(p.path) for p in self.pairs}), "pairs": len(self.pairs),
                "positives": sum(p.is_positive for p in self.pairs), "negatives": sum(negs.values()),
                "neg_types": dict(sorted(negs.items())), "phrases": len(self.phrases())}

    # -- pixels
    def image(self, pair: Pair | int) -> np.ndarray:
        """The pair's image as uint8 HxWx3 (decoded once, then cached)."""
        p = self.pairs[pair] if isinstance(pair, int) else pair
        key = str(p.path)
        img = self._cache.get(key)
        if img is None:
            if not p.path.exists():
                raise FileNotFoundError(f"{p.source}: image file of pair {p.pair_id} not found: {p.path} "
                                        f"(field 'file_name'={p.file_name!r}, image root {p.image_root})")
            with Image.open(p.path) as im:
                img = np.asarray(im.convert("RGB"), dtype=np.uint8)
            self._cache[key] = img
        return img

    def gt_masks(self, pair: Pair | int, size: int | None = None) -> np.ndarray:
        """GT masks as bool ``[n, size, size]`` (``[n, H, W]`` when size is None); n = 0 for negatives.

        Resizing is area-based (bilinear on the 0/1 mask, threshold 0.5), matching the squash-to-square
        resize of ``common.model.to_pixels``.
        """
        p = self.pairs[pair] if isinstance(pair, int) else pair
        h, w = (p.height, p.width) if size is None else (size, size)
        if not p.masks:
            return np.zeros((0, h, w), bool)
        full = mask_utils.decode(p.masks)  # H x W x n, uint8
        full = full.transpose(2, 0, 1).astype(bool)
        if size is None or full.shape[1:] == (size, size):
            return full
        out = np.empty((len(full), size, size), bool)
        for i, m in enumerate(full):
            im = Image.fromarray(m.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(im) >= 128
        return out

    def preload(self, npy_cache: str | Path | None = None) -> "PairDataset":
        """Decode every image now. With ``npy_cache`` (a path), all images are kept as one ``.npy``
        (N x H x W x 3, same-size images only) plus a ``.index.txt`` of their paths, reused when it matches."""
        keys = sorted(self.by_image())
        if npy_cache is not None:
            npy = Path(npy_cache)
            idx = npy.with_suffix(".index.txt")
            digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()
            if npy.exists() and idx.exists() and idx.read_text().split("\n", 1)[0] == digest:
                arr = np.load(npy, mmap_mode="r")
                for k, a in zip(keys, arr):
                    self._cache.setdefault(k, np.asarray(a))
                return self
        by_key = {str(p.path): p for p in self.pairs}
        imgs = [self.image(by_key[k]) for k in keys]
        if npy_cache is not None and imgs and len({i.shape for i in imgs}) == 1:
            import io as _io

            buf = _io.BytesIO()
            np.save(buf, np.stack(imgs))
            atomic_write_bytes(npy, buf.getvalue())
            atomic_write_bytes(idx, (digest + "\n" + "\n".join(keys)).encode())
        return self


# =========================================================================== parsing
def _err(path: Path, where: str, msg: str) -> DataFormatError:
    return DataFormatError(f"{path}: {where}: {msg}")


def _require(obj: dict, key: str, path: Path, where: str, types: tuple | type | None = None) -> Any:
    if not isinstance(obj, dict):
        raise _err(path, where, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise _err(path, where, f"missing field '{key}'")
    val = obj[key]
    if types is not None and not isinstance(val, types):
        raise _err(path, where, f"field '{key}' has type {type(val).__name__}, expected {types}")
    return val


def rle_runs(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), to validate it before use:
    pycocotools decodes an empty or truncated string into a garbage mask without complaint."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = counts[p] - 48
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _to_rle(seg: Any, h: int, w: int, path: Path, where: str) -> dict:
    """Normalise one COCO segmentation (RLE / uncompressed RLE / polygons) to RLE with str counts."""
    if isinstance(seg, dict):
        size = _require(seg, "size", path, where + ".segmentation", list)
        counts = _require(seg, "counts", path, where + ".segmentation", (str, bytes, list))
        if len(size) != 2 or (h and w and [int(size[0]), int(size[1])] != [h, w]):
            raise _err(path, where + ".segmentation.size", f"RLE size {size} does not match the image's "
                                                          f"[height, width] = [{h}, {w}]")
        n_px = int(size[0]) * int(size[1])
        if isinstance(counts, list):
            runs = counts
        else:
            try:
                runs = rle_runs(counts.encode("ascii") if isinstance(counts, str) else counts)
            except (IndexError, UnicodeEncodeError) as e:
                raise _err(path, where + ".segmentation.counts", f"undecodable RLE ({e})") from e
        if not runs or any(not isinstance(r, int) or r < 0 for r in runs) or sum(runs) != n_px:
            raise _err(path, where + ".segmentation.counts",
                       f"RLE runs must be non-negative integers summing to height × width = {n_px}; "
                       f"got {len(runs)} run(s) summing to {sum(r for r in runs if isinstance(r, int))}")
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, int(size[0]), int(size[1]))
        else:
            rle = {"size": [int(size[0]), int(size[1])],
                   "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    elif isinstance(seg, list):
        if not (h and w):
            raise _err(path, where, "polygon segmentation needs the image's 'height' and 'width'")
        if not seg or not all(isinstance(poly, list) and len(poly) >= 6 for poly in seg):
            raise _err(path, where + ".segmentation", "polygons must be lists of >= 3 (x, y) points")
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    else:
        raise _err(path, where + ".segmentation", f"unsupported type {type(seg).__name__}")
    c = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": c.decode("ascii") if isinstance(c, bytes) else c}


def read_doc(path: Path) -> dict:
    """A COCO / SA-Co JSON as a dict, with an error naming the file and field when it is missing or malformed."""
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing dataset file: {path}") from None
    except ValueError as e:
        raise DataFormatError(str(e)) from e
    if not isinstance(doc, dict):
        raise _err(path, "top level", f"expected a COCO-style object, got {type(doc).__name__}")
    for key in ("images", "annotations"):
        _require(doc, key, path, "top level", list)
    return doc


def detect_format(doc: dict) -> str:
    """``"saco"`` when image entries are image-phrase pairs (``text_input``), else ``"coco"``."""
    return "saco" if any(isinstance(im, dict) and "text_input" in im for im in doc["images"]) else "coco"


def _images(doc: dict, path: Path, saco: bool) -> dict[Any, dict]:
    out: dict[Any, dict] = {}
    for i, im in enumerate(doc["images"]):
        where = f"images[{i}]"
        iid = _require(im, "id", path, where, (int, str))
        _require(im, "file_name", path, where, str)
        if saco:
            _require(im, "text_input", path, where, str)
        for k in ("height", "width"):
            if k in im and not isinstance(im[k], int):
                raise _err(path, where, f"field '{k}' must be an integer")
        if iid in out:
            raise _err(path, where, f"duplicate id {iid!r}")
        out[iid] = im
    return out


def _annotations(doc: dict, images: dict, path: Path) -> dict[Any, list[tuple[int | None, dict, int]]]:
    """image/pair id -> [(category_id, RLE, iscrowd)] with every annotation validated."""
    out: dict[Any, list] = {}
    for i, a in enumerate(doc["annotations"]):
        where = f"annotations[{i}] (id={a.get('id') if isinstance(a, dict) else '?'})"
        iid = _require(a, "image_id", path, where)
        if iid not in images:
            raise _err(path, where, f"field 'image_id' = {iid!r} points to no entry of 'images'")
        seg = _require(a, "segmentation", path, where)
        if "bbox" in a and (not isinstance(a["bbox"], list) or len(a["bbox"]) != 4):
            raise _err(path, where, "field 'bbox' must be [x, y, w, h]")
        im = images[iid]
        rle = _to_rle(seg, int(im.get("height", 0)), int(im.get("width", 0)), path, where)
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise _err(path, where, f"field 'iscrowd' must be 0 or 1, got {crowd!r}")
        out.setdefault(iid, []).append((a.get("category_id"), rle, crowd))
    return out


def _boxes(rles: list[dict]) -> list[list[float]]:
    return [list(map(float, b)) for b in mask_utils.toBbox(rles)] if rles else []


def _hw(im: dict, rles: list[dict]) -> tuple[int, int]:
    if "height" in im and "width" in im:
        return int(im["height"]), int(im["width"])
    return (int(rles[0]["size"][0]), int(rles[0]["size"][1])) if rles else (0, 0)


def _load_saco(doc: dict, path: Path, root: Path) -> list[Pair]:
    images = _images(doc, path, saco=True)
    anns = _annotations(doc, images, path)
    default_subset = str(doc.get("info", {}).get("description", "")) or path.stem
    img_index: dict[str, int] = {}
    pairs = []
    for pid, im in images.items():
        rles = [r for _, r, _ in anns.get(pid, [])]
        crowd = tuple(c for _, _, c in anns.get(pid, []))
        h, w = _hw(im, rles)
        neg = None if rles else (im.get("neg_type") or "unlabelled")
        pairs.append(Pair(
            pair_id=str(pid), image_id=img_index.setdefault(im["file_name"], len(img_index)),
            file_name=im["file_name"], phrase=im["text_input"], masks=rles, boxes=_boxes(rles),
            is_exhaustive=bool(im.get("is_instance_exhaustive", 1)), neg_type=neg, world=im.get("world"),
            subset=im.get("subset") or default_subset,
            category_id=int(im["queried_category"]) if str(im.get("queried_category", "")).isdigit() else None,
            height=h, width=w, image_root=str(root), source=str(path), iscrowd=crowd if any(crowd) else ()))
    return pairs


def _load_coco(doc: dict, path: Path, root: Path, negatives: str | None) -> list[Pair]:
    cats_list = _require(doc, "categories", path, "top level", list)
    cats: dict[int, str] = {}
    for i, c in enumerate(cats_list):
        cats[_require(c, "id", path, f"categories[{i}]", int)] = _require(c, "name", path, f"categories[{i}]", str)
    images = _images(doc, path, saco=False)
    anns = _annotations(doc, images, path)
    world = doc.get("info", {}).get("world")
    pairs: list[Pair] = []
    for iid, im in images.items():
        by_cat: dict[int, list[dict]] = {}
        crowd_of: dict[int, list[int]] = {}
        for i, (cid, rle, crowd) in enumerate(anns.get(iid, [])):
            if cid not in cats:
                raise _err(path, f"annotation of image {iid!r}", f"field 'category_id' = {cid!r} is not in 'categories'")
            by_cat.setdefault(cid, []).append(rle)
            crowd_of.setdefault(cid, []).append(crowd)
        not_exh = set(im.get("not_exhaustive_category_ids", []))
        for cid in sorted(by_cat):
            rles = by_cat[cid]
            h, w = _hw(im, rles)
            pairs.append(Pair(pair_id=f"{iid}/{cid}", image_id=iid, file_name=im["file_name"], phrase=cats[cid],
                              masks=rles, boxes=_boxes(rles), is_exhaustive=cid not in not_exh, neg_type=None,
                              world=world, category_id=cid, height=h, width=w, image_root=str(root),
                              source=str(path), iscrowd=tuple(crowd_of[cid]) if any(crowd_of[cid]) else ()))
        if negatives == "absent_categories":
            absent = im["neg_category_ids"] if "neg_category_ids" in im else [c for c in cats if c not in by_cat]
            h, w = _hw(im, [])
            for cid in sorted(absent):
                if cid not in cats:
                    raise _err(path, f"images entry id={iid!r}", f"'neg_category_ids' holds unknown category {cid!r}")
                pairs.append(Pair(pair_id=f"{iid}/{cid}", image_id=iid, file_name=im["file_name"], phrase=cats[cid],
                                  masks=[], boxes=[], is_exhaustive=True, neg_type="absent", world=world,
                                  category_id=cid, height=h, width=w, image_root=str(root), source=str(path)))
        elif negatives is not None:
            raise ValueError(f"negatives must be None or 'absent_categories', got {negatives!r}")
    return pairs


def load_pairs(json_path: str | Path, image_root: str | Path | None = None,
               negatives: str | None = None) -> PairDataset:
    """Read a COCO-instances or SA-Co/Gold-style JSON into a :class:`PairDataset` (format auto-detected).

    ``image_root`` defaults to the JSON's directory (``file_name`` is relative to it). ``negatives`` applies
    to COCO files only: ``"absent_categories"`` adds negative pairs for the categories absent from each image.
    The world tag of each pair comes from the entry's ``world`` field, else from the file's location.
    """
    path = Path(json_path)
    doc = read_doc(path)
    root = Path(image_root) if image_root is not None else path.parent
    if detect_format(doc) == "saco":
        if negatives is not None:
            raise ValueError(f"{path}: SA-Co-style files carry their own negatives; negatives={negatives!r} "
                             "applies to COCO files only")
        pairs = _load_saco(doc, path, root)
    else:
        pairs = _load_coco(doc, path, root, negatives)
    world = _world_of(path)
    for p in pairs:
        if p.world is None:
            p.world = world
    return PairDataset(pairs, name=path.stem)


def _world_of(path: Path) -> str | None:
    stem = path.stem
    if stem.startswith("watch"):
        return "watch"
    if stem.startswith(("ov_", "lvis", "saco")):
        return "open_vocab"
    return None


__all__ = ["DataFormatError", "Pair", "PairDataset", "load_pairs", "detect_format"]
