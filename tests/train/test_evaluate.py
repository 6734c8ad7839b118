"""Evaluation against hand computations: confusion matrix, IoU policies, inference modes, mode restoring."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.train.evaluate import (ConfusionMatrix, center_crop_box, evaluate, predict, sliding_stride,
                                window_starts)

NAN = float("nan")


def _matrix(pred, target, n=3):
    cm = ConfusionMatrix(n)
    cm.update(torch.tensor(pred), torch.tensor(target))
    return cm


def test_confusion_matrix_counts_and_ignore():
    cm = _matrix([[0, 1, 1, 2, 0, 2]], [[0, 1, 2, 2, 255, 1]])
    # rows = ground truth, columns = prediction; the pixel with target 255 is skipped (its prediction too)
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert cm.matrix.dtype == torch.int64


def test_iou_hand_computed():
    cm = _matrix([[0, 1, 1, 2, 0, 2]], [[0, 1, 2, 2, 255, 1]])
    # class 0: I=1, U=1 ; class 1: I=1, U=2+2-1=3 ; class 2: I=1, U=3
    expected = [100.0, 100 / 3, 100 / 3]
    assert cm.iou().tolist() == pytest.approx(expected)
    assert cm.miou() == pytest.approx(sum(expected) / 3)


def test_absent_class_policies():
    # class 2 appears in neither prediction nor ground truth; class 1 only in the prediction
    cm = _matrix([[0, 0, 1, 1]], [[0, 0, 0, 255]])
    # class 0: I=2, U=3 ; class 1: I=0, U=1 (a false positive) ; class 2: absent
    assert cm.iou("zero").tolist() == pytest.approx([200 / 3, 0.0, 0.0])
    assert cm.miou("zero") == pytest.approx((200 / 3) / 3)  # official: absent counts as 0 in the mean
    iou_nan = cm.iou("nan").tolist()
    assert iou_nan[:2] == pytest.approx([200 / 3, 0.0]) and math.isnan(iou_nan[2])
    assert cm.miou("nan") == pytest.approx((200 / 3) / 2)
    with pytest.raises(ValueError, match="absent"):
        cm.iou("skip")


def test_merge_equals_single_update_and_bad_labels_rejected():
    pred, target = torch.randint(0, 3, (2, 5, 5)), torch.randint(0, 3, (2, 5, 5))
    whole = ConfusionMatrix(3)
    whole.update(pred, target)
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    assert torch.equal(a.merge(b).matrix, whole.matrix)
    with pytest.raises(ValueError, match=r"target label values \[7\]"):
        whole.update(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[7, 255]]))


class ConstantModel(nn.Module):
    """A per-pixel model: the logits of class k are input channel k (so windows do not change the scores)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        return x * self.scale


class WindowMeanModel(nn.Module):
    """Logits = window mean of each channel: a window-size-dependent model, so summation is observable."""

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def test_window_starts_official_and_clamped():
    assert sliding_stride(801) == 534
    # Cityscapes 1024 x 2048 at crop 801, official (truncated border windows)
    assert window_starts(1024, 801, 534) == [0, 534]
    assert window_starts(2048, 801, 534) == [0, 534, 1068, 1602]
    assert window_starts(2048, 801, 534, "clamp") == [0, 534, 1068, 1247]
    assert window_starts(801, 801, 534, "clamp") == [0]
    assert window_starts(500, 801, 534, "clamp") == [0]
    assert window_starts(500, 801, 534) == [0]  # smaller than the window: evaluated whole


@pytest.mark.parametrize("border", ["truncate", "clamp"])
@pytest.mark.parametrize("size", [(7, 11), (9, 9), (4, 13), (3, 3)])
def test_windows_cover_every_pixel(border, size):
    model = ConstantModel()
    flat = torch.zeros(1, 2, *size)  # equal logits: softmax 0.5 per class, per window
    scores = predict(model, flat, "sliding", crop_size=6, num_classes=2, border=border)
    assert (scores > 0).all()
    if border == "clamp":
        assert all(shape == (min(6, size[0]), min(6, size[1])) for shape in model.calls)


def test_exact_crop_size_image_equals_whole_prediction():
    torch.manual_seed(0)
    image = torch.randn(2, 4, 6, 6)
    whole = predict(ConstantModel(), image, "whole", 6, 4)
    clamped = predict(ConstantModel(), image, "sliding", 6, 4, border="clamp")
    assert torch.allclose(clamped, whole.softmax(dim=1))
    # the official (truncate) windows: a crop-size image is one full window plus clipped extra windows at the
    # stride, each summing the same per-pixel softmax, so the argmax still equals the whole-image prediction
    truncated = predict(ConstantModel(), image, "sliding", 6, 4)
    assert torch.equal(truncated.argmax(1), whole.argmax(1))


def test_sliding_sums_softmax_over_windows_by_hand():
    # width 5, crop 3 -> stride 2, official starts 0, 2, 4 -> windows [0,3), [2,5), [4,5); one row, height 1
    image = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]]).view(1, 2, 1, 5)
    scores = predict(WindowMeanModel(), image, "sliding", crop_size=3, num_classes=2)

    def p1(mean):  # softmax probability of class 0 when the logits are (mean, 0)
        return 1 / (1 + math.exp(-mean))

    w0, w1, w2 = p1(1.0), p1(3.0), p1(4.0)  # window means of channel 0: [0,1,2], [2,3,4], [4]
    expected0 = [w0, w0, w0 + w1, w1, w1 + w2]
    assert scores[0, 0, 0].tolist() == pytest.approx(expected0)
    counts = [1, 1, 2, 1, 2]
    assert (scores[0, 0, 0] + scores[0, 1, 0]).tolist() == pytest.approx(counts)


def test_center_crop_box_and_prediction():
    assert center_crop_box(10, 7, 4) == (3, 1, 7, 5)
    assert center_crop_box(3, 9, 4) == (0, 2, 3, 6)  # the short side is kept whole
    scores = predict(ConstantModel(), torch.randn(1, 2, 10, 7), "center_crop", 4, 2)
    assert scores.shape == (1, 2, 4, 4)


def _loader(n=3, size=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(n):
        mask = torch.randint(0, classes, (1, size, size), generator=g)
        mask[:, 0, :] = 255
        image = F.one_hot(mask.clamp(max=classes - 1), classes).permute(0, 3, 1, 2).float() * 5
        batches.append({"image": image, "mask": mask, "id": [f"img{i}"]})
    return batches


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_perfect_model_restores_mode(was_training):
    model = ConstantModel().train(was_training)
    result = evaluate(model, _loader(), "whole", 8, 3, ["a", "b", "c"], "cpu", progress=False)
    assert model.training is was_training
    assert result["miou"] == pytest.approx(100.0)
    assert list(result["per_class"]) == ["a", "b", "c"]
    assert result["confusion"].sum() == 3 * 7 * 8  # the ignored first row of every mask is not counted


def test_evaluate_matches_confusion_matrix_for_all_modes():
    loader = _loader(n=2, size=9, seed=1)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 1)  # an imperfect model
    for mode in ("whole", "center_crop", "sliding"):
        result = evaluate(model, loader, mode, 6, 3, ["a", "b", "c"], None, absent="nan", progress=False)
        cm = ConfusionMatrix(3)
        with torch.no_grad():
            for batch in loader:
                pred = predict(model, batch["image"], mode, 6, 3).argmax(1)
                mask = batch["mask"][:, 1:7, 1:7] if mode == "center_crop" else batch["mask"]
                cm.update(pred, mask)
        assert torch.equal(result["confusion"], cm.matrix)
        assert result["miou"] == pytest.approx(cm.miou("nan"))


def test_evaluate_restores_mode_after_error_and_checks_names():
    model = ConstantModel().train()
    with pytest.raises(ValueError, match="class names"):
        evaluate(model, _loader(), "whole", 8, 3, ["a"], "cpu", progress=False)
    bad = [{"image": torch.zeros(1, 3, 4, 4), "mask": torch.full((1, 4, 4), 9)}]
    with pytest.raises(ValueError, match="outside"):
        evaluate(model, bad, "whole", 4, 3, ["a", "b", "c"], "cpu", progress=False)
    assert model.training
