"""common.similarity (linear CKA, Post 01 §5–§6) and common.model.hybrid_state (Post 01 §2's swap matrix): known-answer
cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.similarity import linear_cka


def test_one_dimensional_cka_is_the_squared_correlation():
    # centred x = (−1, 0, 1), y = (0, −1, 1): (x·y)² / (|x|²|y|²) = 1 / 4
    assert linear_cka(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [0.0], [2.0]])) == pytest.approx(0.25)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_one_under_rotation_scaling_and_shift(debiased):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0, debiased) == pytest.approx(1.0)
    assert linear_cka(x[:, :4], x, debiased) < 0.95  # dropping half the directions is not the same representation


def test_debiased_cka_removes_the_small_sample_inflation():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 500)), rng.normal(size=(20, 500))  # unrelated, few inputs, wide
    assert linear_cka(x, y) > 0.8  # the biased estimator calls them similar
    assert abs(linear_cka(x, y, debiased=True)) < 0.1
    # with many inputs the two estimators agree
    x = rng.normal(size=(3000, 4))
    y = x @ rng.normal(size=(4, 6)) + rng.normal(size=(3000, 6))
    assert linear_cka(x, y, debiased=True) == pytest.approx(linear_cka(x, y), abs=0.01)


def test_cka_flattens_token_dims_and_names_bad_input():
    x = torch.randn(6, 3, 4)
    assert linear_cka(x, x.reshape(6, 12)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(torch.tensor([[1.0], [float("nan")]]), torch.randn(2, 1))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(torch.randn(3, 2), torch.randn(3, 2), debiased=True)


def test_hybrid_state_takes_the_named_modules_from_the_donor():
    from common.model import MODULES, build_model, hybrid_state, module_of

    base = build_model("micro", 40, seed=0).state_dict()
    ft = {k: v + 1.0 if v.is_floating_point() else v for k, v in base.items()}
    assert hybrid_state(ft, base, "") == base and hybrid_state(ft, base, "TVFD") == ft
    for cell in ("T", "V", "F", "D", "VF", "FD"):
        mixed = hybrid_state(ft, base, cell)
        for k, v in mixed.items():
            assert v is (ft[k] if module_of(k) in cell else base[k]), k
    assert set(MODULES) == {"T", "V", "F", "D"}
    with pytest.raises(ValueError, match="unknown module"):
        hybrid_state(ft, base, "X")
    with pytest.raises(KeyError, match="differ in tensor names"):
        hybrid_state({k: v for k, v in ft.items() if not k.startswith("detr_encoder.")}, base, "F")
    bad = dict(ft)
    k0 = next(k for k in bad if k.startswith("detr_encoder.") and bad[k].ndim == 2)
    bad[k0] = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="shape"):
        hybrid_state(bad, base, "F")


def _lens_set(rng: np.random.Generator, a: np.ndarray, n_img: int = 40, n_pairs: int = 160, t: int = 64, d: int = 16,
              planted: bool = True):
    from common.probes import LensSet

    tokens = rng.normal(size=(n_img, t, d))
    text = rng.normal(size=(n_pairs, 8))
    image = rng.integers(0, n_img, n_pairs)
    score = np.einsum("ptd,de,pe->pt", tokens[image], a, text)  # a planted rank-2 bilinear map decides each token
    target = (score > 0.5).astype(np.float32)
    if not planted:
        tokens = rng.normal(size=tokens.shape)  # the same targets, from tokens that carry nothing
    f = lambda x: torch.as_tensor(np.asarray(x))  # noqa: E731
    return LensSet(f(tokens).float(), f(text).float(), f(image).long(), f(target))


def test_mask_lens_recovers_a_planted_bilinear_mask_and_not_noise():
    from common.probes import mask_lens_iou

    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 2)) @ rng.normal(size=(2, 8))  # rank 2
    train, test = _lens_set(rng, a), _lens_set(rng, a)
    found = mask_lens_iou(train, test, rank=4, steps=400)
    assert found["iou"] > 0.85 and found["n_pairs"] > 100
    blind = mask_lens_iou(_lens_set(rng, a, planted=False), _lens_set(rng, a, planted=False), rank=4, steps=400)
    assert blind["iou"] < 0.5 < found["iou"] - 0.3
    with pytest.raises(ValueError, match="targets cover"):
        bad = _lens_set(rng, a)
        bad.target = bad.target[:, :10]
        mask_lens_iou(bad, test)
