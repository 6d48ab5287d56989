"""The one loader (common.data): COCO instances and SA-Co/Gold style through one interface; clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data import DataFormatError, PairDataset, detect_format, load_pairs
from common.worlds import encode_rle


def _square(h=20, w=30, y0=2, x0=3, s=8) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y0 + s, x0:x0 + s] = True
    return m


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A two-image COCO file and a SA-Co/Gold-style file over the same images (real field layout)."""
    (tmp_path / "img").mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    coco = {
        "images": [{"id": 1, "file_name": "img/1.png", "height": 20, "width": 30},
                   {"id": 2, "file_name": "img/2.png", "height": 20, "width": 30, "neg_category_ids": [3],
                    "not_exhaustive_category_ids": [2]}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(_square()), "bbox": [3, 2, 8, 8],
             "area": 64, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": encode_rle(_square(x0=15)), "area": 64,
             "bbox": [15, 2, 8, 8], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 0, "area": 64, "bbox": [3, 2, 8, 8],
             "segmentation": [[3, 2, 11, 2, 11, 10, 3, 10]]},  # polygon, as LVIS/COCO ship
        ],
        "categories": [{"id": 1, "name": "bezel"}, {"id": 2, "name": "dial"}, {"id": 3, "name": "crown"}],
    }
    saco = {
        "info": {"description": "SA-Co/Gold-Attributes-A"},
        "images": [
            {"id": 10000000, "file_name": "img/1.png", "text_input": "red striped object", "width": 30,
             "height": 20, "queried_category": "5", "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1},
            {"id": 10000001, "file_name": "img/1.png", "text_input": "harem pants", "width": 30, "height": 20,
             "queried_category": "0", "is_instance_exhaustive": 1, "is_pixel_exhaustive": 1},
        ],
        "annotations": [{"id": 1, "image_id": 10000000, "source": "manual", "area": 64 / 600,
                         "bbox": [0.1, 0.1, 8 / 30, 0.4], "segmentation": encode_rle(_square()),
                         "category_id": 1, "iscrowd": 0}],
        "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
    }
    out = {"coco": tmp_path / "coco.json", "saco": tmp_path / "saco.json"}
    out["coco"].write_text(json.dumps(coco))
    out["saco"].write_text(json.dumps(saco))
    return out


def test_one_interface_for_both_formats(files):
    coco, saco = load_pairs(files["coco"]), load_pairs(files["saco"])
    assert detect_format(json.loads(files["coco"].read_text())) == "coco"
    assert detect_format(json.loads(files["saco"].read_text())) == "saco"
    for ds in (coco, saco):
        assert isinstance(ds, PairDataset)
        p = ds.positives()[0]
        assert ds.image(p).shape == (20, 30, 3)
        g = ds.gt_masks(p, 16)
        assert g.dtype == bool and g.shape[1:] == (16, 16) and g.shape[0] == len(p.masks) >= 1
        assert ds.gt_masks(p).shape[1:] == (20, 30)
    # COCO: one pair per (image, category present); instances grouped; polygons rasterised
    assert sorted(p.phrase for p in coco) == ["bezel", "dial"]
    bezel = next(p for p in coco if p.phrase == "bezel")
    assert len(bezel.masks) == 2 and bezel.boxes[1] == [15.0, 2.0, 8.0, 8.0]
    dial = next(p for p in coco if p.phrase == "dial")
    assert coco.gt_masks(dial)[0].sum() > 40 and dial.is_exhaustive is False
    # SA-Co: a pair with no annotation is a negative; boxes in pixels although the file's are normalised
    assert len(saco.negatives()) == 1 and saco.negatives()[0].phrase == "harem pants"
    assert saco.negatives()[0].neg_type == "unlabelled"
    assert saco.positives()[0].boxes == [[3.0, 2.0, 8.0, 8.0]]
    assert saco.positives()[0].subset == "SA-Co/Gold-Attributes-A"
    assert list(saco.by_image()) == [str(files["saco"].parent / "img/1.png")]
    assert saco.phrases() == ["harem pants", "red striped object"]


def test_coco_absent_category_negatives(files):
    ds = load_pairs(files["coco"], negatives="absent_categories")
    negs = {(p.image_id, p.phrase) for p in ds.negatives()}
    # image 1: every absent category; image 2: LVIS-style verified neg_category_ids only
    assert negs == {(1, "dial"), (1, "crown"), (2, "crown")}
    assert all(p.neg_type == "absent" and p.masks == [] for p in ds.negatives())


def test_image_cache_and_npy_preload(files, tmp_path):
    ds = load_pairs(files["saco"])
    a = ds.image(0)
    assert ds.image(1) is a  # same file decoded once
    ds.preload(tmp_path / "cache.npy")
    ds2 = load_pairs(files["saco"]).preload(tmp_path / "cache.npy")
    assert np.array_equal(ds2.image(0), a)


def _write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["annotations"][0].update(image_id=99), "image_id"),
    (lambda d: d["annotations"][0].pop("segmentation"), "segmentation"),
    (lambda d: d["annotations"][0]["segmentation"].update(size=[10, 10]), "size"),
    (lambda d: d["annotations"][0].update(category_id=42), "category_id"),
    (lambda d: d["images"][0].pop("file_name"), "file_name"),
    (lambda d: d.pop("annotations"), "annotations"),
    (lambda d: d["annotations"][0]["segmentation"].update(counts=7), "counts"),
])
def test_malformed_coco_names_file_and_field(files, tmp_path, mutate, needle):
    doc = json.loads(files["coco"].read_text())
    mutate(doc)
    bad = _write(tmp_path / "bad.json", doc)
    with pytest.raises(DataFormatError) as e:
        load_pairs(bad)
    assert str(bad) in str(e.value) and needle in str(e.value)


def test_malformed_saco_and_missing_files(files, tmp_path):
    doc = json.loads(files["saco"].read_text())
    doc["images"][1].pop("text_input")
    bad = _write(tmp_path / "bad_saco.json", doc)
    with pytest.raises(DataFormatError, match="text_input"):
        load_pairs(bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_pairs(tmp_path / "nope.json")
    broken = _write(tmp_path / "broken.json", "{not json")
    with pytest.raises(DataFormatError, match="broken.json"):
        load_pairs(broken)
    ds = load_pairs(files["saco"], image_root=tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="file_name"):
        ds.image(0)
