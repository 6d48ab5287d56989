"""Synthetic worlds (common.worlds): determinism, vocabulary, watch structure, typed negatives, caching."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from common import worlds
from common.data import load_pairs


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict[str, Path]:
    return worlds.ensure_worlds(seed=0, root=tmp_path_factory.mktemp("worlds"), scale="micro")


def _digest(d: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(p for p in d.rglob("*") if p.is_file() and p.name != "manifest.json"):
        h.update(f.relative_to(d).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_differs(micro, tmp_path):
    again = worlds.ensure_worlds(seed=0, root=tmp_path / "a", scale="micro")
    assert _digest(again["watch_train"].parent) == _digest(micro["watch_train"].parent)
    other = worlds.ensure_worlds(seed=1, root=tmp_path / "b", scale="micro")
    assert other["watch_train"].read_bytes() != micro["watch_train"].read_bytes()


def test_cache_reused_and_regenerated_on_hash_change(micro):
    d = micro["watch_train"].parent
    mtime = micro["watch_train"].stat().st_mtime_ns
    assert worlds.ensure_worlds(seed=0, root=d.parent, scale="micro") == micro
    assert micro["watch_train"].stat().st_mtime_ns == mtime  # reused, not rewritten
    man = d / "manifest.json"
    text = man.read_text()
    man.write_text(text.replace(worlds.config_hash(0, worlds.SCALES["micro"]), "stale"))
    worlds.ensure_worlds(seed=0, root=d.parent, scale="micro")
    assert worlds.config_hash(0, worlds.SCALES["micro"]) in man.read_text()


def test_every_split_exists_and_loads(micro):
    assert set(worlds.SPLITS) <= set(micro)
    for name, path in micro.items():
        ds = load_pairs(path)
        assert len(ds) > 0, name
        img = ds.image(ds[0])
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8


def test_watch_concepts_are_37_and_sourced():
    assert len(worlds.WATCH_CONCEPTS) == 37 == len(set(worlds.WATCH_CONCEPTS))
    assert len(worlds.WATCH_ADDED) == 7 and len(worlds.WATCH_FROM_POSTS) == 30
    for a, b in worlds.SYNONYMS + worlds.COMPOUNDS + worlds.CO_LOCATED:
        assert a in worlds.WATCH_CONCEPTS and b in worlds.WATCH_CONCEPTS
    assert len(worlds.NEG_CORPUS_CONCEPTS) == 22
    assert set(worlds.WATCH_PRETRAIN_CONCEPTS) < set(worlds.WATCH_CONCEPTS)


def test_no_word_shared_between_worlds_and_vocabulary_fixed():
    watch = {w for c in worlds.WATCH_CONCEPTS for w in c.split()}
    ov = {w for c, p in worlds.ov_categories() for w in worlds.ov_phrase(c, p).split()}
    assert not watch & ov
    assert worlds.vocabulary() == sorted(watch | ov)
    assert len(worlds.ov_categories()) >= 40
    assert max(len(worlds.ov_phrase(c, p).split()) for c, p in worlds.ov_categories()) <= 6
    assert max(len(c.split()) for c in worlds.WATCH_CONCEPTS) <= 6


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((112, 112)) < 0.3
    rle = worlds.encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [112, 112]
    assert np.array_equal(mask_utils.decode(rle).astype(bool), m)


def _render_many(n: int = 40):
    for i in range(n):
        yield worlds.render_watch(worlds._rng(123, "t", i))


def test_watch_structure_synonyms_compounds_colocation():
    seen_compound = seen_plain = False
    for _, parts, spec in _render_many():
        for a, b in worlds.SYNONYMS[:4]:
            assert (a in parts) == (b in parts)
            if a in parts:
                assert all(np.array_equal(x, y) for x, y in zip(parts[a], parts[b]))
        if "leather" in parts:
            assert spec["strap"] == "leather" and all(np.array_equal(x, y) for x, y in zip(parts["leather"], parts["strap"]))
        if "metal dial" in parts:
            seen_compound = True
            assert spec["dial"] == "metal" and np.array_equal(parts["metal dial"][0], parts["dial"][0])
        elif "dial" in parts:
            seen_plain = True
        assert not ("metal strap" in parts and "leather" in parts)
        if "crown" in parts and "pusher" in parts:  # adjacent on the flank: centroids close
            c = np.argwhere(parts["crown"][0]).mean(0)
            p = np.argwhere(parts["pusher"][0]).mean(0)
            assert np.linalg.norm(c - p) < worlds.WATCH_RADIUS[1] / 2  # within half the largest case radius
        assert set(parts) <= set(worlds.WATCH_CONCEPTS) and len(parts) < len(worlds.WATCH_CONCEPTS)
    assert seen_compound and seen_plain


def test_watch_split_synonyms_identical_masks(micro):
    ds = load_pairs(micro["watch_train"])
    for img_pairs in ds.by_image().values():
        by = {p.phrase: p for p in img_pairs}
        for a, b in worlds.SYNONYMS[:4]:
            if a in by:
                assert by[a].masks == by[b].masks


def test_watch_negatives_absent_from_patch_and_no_annotations(micro):
    neg = load_pairs(micro["watch_negatives"])
    assert len(neg.positives()) == 0 and len(neg) > 0
    assert {p.neg_type for p in neg} <= set(worlds.NEG_TYPES_WATCH)
    assert {p.phrase for p in neg} <= set(worlds.NEG_CORPUS_CONCEPTS)


def test_ov_negative_types_hold(micro):
    ds = load_pairs(micro["ov_pretrain"])
    cat = {worlds.ov_phrase(c, p): (c, p) for c, p in worlds.ov_categories()}
    for pairs in ds.by_image().values():
        present = {cat[p.phrase] for p in pairs if p.is_positive}
        cols, pats = {c for c, _ in present}, {p for _, p in present}
        for p in pairs:
            if p.is_negative:
                c, pt = cat[p.phrase]
                assert (c, pt) not in present
                n = (c in cols) + (pt in pats)
                assert p.neg_type == ("absent", "attribute_shared", "binding")[n]
    assert {"absent", "attribute_shared"} <= {p.neg_type for p in ds.negatives()}


def test_binding_negative_pixels():
    """A binding negative's colour and pattern are both rendered, never on one object."""
    for i in range(30):
        img, objs = worlds.render_scene(worlds._rng(7, "b", i), worlds.PROFILES["default"])
        cands = worlds.negative_candidates([c for c, _ in objs])
        for c, p in cands["binding"]:
            assert any(oc == c for (oc, _), _m in objs) and any(op == p for (_, op), _m in objs)
            assert not any(o == (c, p) for o, _m in objs)


def test_saco_subsets_and_fields(micro):
    raw = __import__("json").loads(micro["saco_gold"].read_text())
    assert raw["categories"] == [{"supercategory": "object", "id": 1, "name": "object"}]
    for im in raw["images"]:
        assert {"id", "file_name", "text_input", "is_instance_exhaustive", "width", "height"} <= set(im)
    ds = load_pairs(micro["saco_gold"])
    assert {p.subset for p in ds} == set(worlds.SACO_SUBSETS)
    assert all(p.world == "open_vocab" for p in ds)
    for s in worlds.SACO_SUBSETS:
        assert len(load_pairs(micro[f"saco_gold_{s}"])) == sum(p.subset == s for p in ds)


def test_pretrain_mix_share_and_disjoint_from_watch_test(micro):
    mix = worlds.pretrain_mix(micro, share=0.3, seed=0)
    watch = [p for p in mix if p.world == "watch"]
    assert 0 < len(watch) < len(mix)
    assert {p.phrase for p in watch} <= set(worlds.WATCH_PRETRAIN_CONCEPTS)
    assert any(p.is_negative for p in watch)
    test_files = {str(p.path) for p in load_pairs(micro["watch_test"])}
    assert not test_files & {str(p.path) for p in mix}
    assert len([p for p in worlds.pretrain_mix(micro, share=0.0) if p.world == "watch"]) == 0
