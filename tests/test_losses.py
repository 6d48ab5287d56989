"""Set loss, matching, GIoU, schedules and stream cadence: known-answer cases."""
import numpy as np
import pytest
import torch

from common.forward import PairOutputs
from common.losses import LossWeights, Target, generalized_box_iou, hungarian_match, make_target, set_loss
from common.schedules import Schedule, match_then_boost
from common.train import stream_for_step


def test_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    assert generalized_box_iou(a, a).item() == pytest.approx(1.0)
    b = torch.tensor([[0.5, 0.5, 1.0, 1.0]])  # disjoint corner boxes: IoU 0, hull 1, union 0.5
    assert generalized_box_iou(a, b).item() == pytest.approx(-0.5)


def test_make_target_boxes_and_area_downsampling():
    m = np.zeros((1, 8, 8), bool)
    m[0, 2:6, 0:4] = True
    t = make_target(m, 4)
    torch.testing.assert_close(t.boxes, torch.tensor([[0.0, 0.25, 0.5, 0.75]]))
    assert t.masks.shape == (1, 4, 4) and t.masks.sum().item() == pytest.approx(4.0)
    assert not make_target(m[:0], 4).present


def test_hungarian_picks_the_query_on_the_box():
    boxes = torch.tensor([[0.6, 0.6, 0.9, 0.9], [0.1, 0.1, 0.4, 0.4], [0.0, 0.0, 1.0, 1.0]])
    t = Target(torch.zeros(1, 4, 4), torch.tensor([[0.1, 0.1, 0.4, 0.4]]))
    qi, gi = hungarian_match(torch.zeros(3), boxes, t)
    assert qi.tolist() == [1] and gi.tolist() == [0]


def _outputs(L=2, N=2, Q=3, h=4, presence=0.0):
    return PairOutputs(logits=torch.zeros(L, N, Q, requires_grad=True), boxes=torch.full((L, N, Q, 4), 0.5),
                       presence=torch.full((L, N), presence, requires_grad=True),
                       masks=torch.zeros(1, Q, h, h, requires_grad=True), semantic=torch.zeros(1, 1, h, h),
                       mask_rows=torch.tensor([0]))


def test_negative_pair_trains_only_presence():
    out = _outputs()
    pos = Target(torch.ones(1, 4, 4), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    neg = Target(torch.zeros(0, 4, 4), torch.zeros(0, 4))
    terms = set_loss(out, [pos, neg], LossWeights())
    terms["total"].backward()
    assert out.logits.grad[:, 1].abs().sum() == 0  # no query target for the absent phrase
    assert out.logits.grad[:, 0].abs().sum() > 0
    assert out.presence.grad[:, 1].abs().sum() > 0
    # presence BCE at logit 0 is ln 2 for every pair and layer
    assert terms["presence"].item() == pytest.approx(np.log(2), rel=1e-6)


def test_presence_gradient_flows_beyond_the_transformers_clamp():
    out = _outputs(presence=25.0)  # far beyond ±10: a clamp would pass zero gradient
    neg = Target(torch.zeros(0, 4, 4), torch.zeros(0, 4))
    set_loss(out, [neg, neg], LossWeights())["total"].backward()
    assert (out.presence.grad > 0).all()


def test_schedules():
    s = Schedule("warmup_cosine", warmup=10, final=0.0)
    assert s(5, 100) == pytest.approx(0.5) and s(10, 100) == pytest.approx(1.0) and s(100, 100) == pytest.approx(0.0)
    mtb = match_then_boost(2000)
    assert mtb(25, 2000) == pytest.approx(0.5)
    assert mtb(50, 2000) == pytest.approx(1.0) and mtb(400, 2000) == pytest.approx(1.0)
    assert mtb(1000, 2000) == pytest.approx(5.0) and mtb(2000, 2000) == pytest.approx(5.0)
    assert 1.0 < mtb(450, 2000) < 5.0


def test_stream_cadence_one_in_ten_and_offsets():
    picks = [stream_for_step(s, [1, 10, 10])[0] for s in range(1, 41)]
    assert picks.count(1) == 4 and picks.count(2) == 4 and picks.count(0) == 32
    assert all(not (a and b) for a, b in zip([p == 1 for p in picks], [p == 2 for p in picks]))
    # batches served count up consecutively per stream
    served = {}
    for s in range(1, 41):
        j, k = stream_for_step(s, [1, 10, 10])
        assert k == served.get(j, 0)
        served[j] = k + 1
