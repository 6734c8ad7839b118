"""An independent reference of the official UniMatch training step, for tests/methods/test_fidelity_reference.py.

Written from the published equations and the recipe as the official code documents it (reference.md §2),
in the official scripts' own style (boolean-mask assignment, `.sum().item()` normalisers, a fresh
`nn.Dropout2d(0.5)` per call), and deliberately importing nothing from the suite: the suite is what it checks.

The only thing it borrows is the network's weights: `forward` runs the DeepLabV3+ decoder from the model's
own layers (torch Sequentials), so the suite's forward code is checked too, but its backbone (resnet_small,
not an official one) is called as it is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# --- model: the official DeepLabV3Plus.forward / _decode, over the suite model's layers ---------------------

def _up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _aspp(head, x):
    # Branch by branch in the official order: it fixes the order in which autograd sums x's gradient.
    feats = [head.b0(x), head.b1(x), head.b2(x), head.b3(x), _up(head.b4.gap(x), x.shape[-2:])]
    return head.project(torch.cat(feats, 1))


def _decode(model, c1, c4):
    c4 = _up(_aspp(model.head, c4), c1.shape[-2:])
    c1 = model.reduce(c1)
    return model.classifier(model.fuse(torch.cat([c1, c4], dim=1)))


def forward(model, x, need_fp=False):
    h, w = x.shape[-2:]
    c1, c4 = model.backbone(x)
    if need_fp:
        outs = _decode(model, torch.cat((c1, nn.Dropout2d(0.5)(c1))), torch.cat((c4, nn.Dropout2d(0.5)(c4))))
        return _up(outs, (h, w)).chunk(2)
    return _up(_decode(model, c1, c4), (h, w))


# --- criteria -----------------------------------------------------------------------------------------------

class ProbOhemCrossEntropy2d(nn.Module):
    """OHEM CE as the official code (and the PSPNet/CPS lineage it comes from) states it: drop pixels whose
    true-class probability exceeds `thresh`, unless that leaves fewer than `min_kept`, in which case the
    threshold rises to the min_kept-th smallest probability; no mining with min_kept = 0 or > #valid."""

    def __init__(self, ignore_index=255, thresh=0.7, min_kept=200000):
        super().__init__()
        self.ignore_index, self.thresh, self.min_kept = ignore_index, float(thresh), int(min_kept)
        self.criterion = nn.CrossEntropyLoss(ignore_index=ignore_index)

    def forward(self, pred, target):
        b, c, h, w = pred.size()
        target = target.view(-1)
        valid_mask = target.ne(self.ignore_index)
        target = target * valid_mask.long()
        num_valid = valid_mask.sum()
        prob = F.softmax(pred, dim=1).transpose(0, 1).reshape(c, -1)
        if self.min_kept > num_valid:
            pass
        elif num_valid > 0:
            prob = prob.masked_fill_(~valid_mask, 1)
            mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
            threshold = self.thresh
            if self.min_kept > 0:
                _, index = mask_prob.sort()
                threshold_index = index[min(len(index), self.min_kept) - 1]
                if mask_prob[threshold_index] > self.thresh:
                    threshold = mask_prob[threshold_index]
                kept_mask = mask_prob.le(threshold)
                target = target * kept_mask.long()
                valid_mask = valid_mask * kept_mask
        target = target.masked_fill_(~valid_mask, self.ignore_index).view(b, h, w)
        return self.criterion(pred, target)


def criterion_l(settings):
    if settings["criterion"] == "ohem":
        return ProbOhemCrossEntropy2d(255, settings["ohem_thresh"], settings["ohem_min_kept"])
    return nn.CrossEntropyLoss(ignore_index=255)


def _masked_u_loss(pred, label, conf, ignore, thresh):
    """sum of CE over confident non-padding pixels / number of non-padding pixels (official)."""
    loss = nn.CrossEntropyLoss(reduction="none")(pred, label)
    loss = loss * ((conf >= thresh) & (ignore != 255))
    return loss.sum() / (ignore != 255).sum().item()


def _cutmixed(mask, conf, ignore, mask_mix, conf_mix, ignore_mix, box):
    mask, conf, ignore = mask.clone(), conf.clone(), ignore.clone()
    mask[box == 1] = mask_mix[box == 1]
    conf[box == 1] = conf_mix[box == 1]
    ignore[box == 1] = ignore_mix[box == 1]
    return mask, conf, ignore


def _mix_labels(model, img_mix):
    with torch.no_grad():
        model.eval()
        pred = forward(model, img_mix).detach()
        conf, mask = pred.softmax(dim=1).max(dim=1)[0], pred.argmax(dim=1)
    model.train()
    return mask, conf


def _paste(img, img_mix, box):
    img = img.clone()
    img[box.unsqueeze(1).expand(img.shape) == 1] = img_mix[box.unsqueeze(1).expand(img.shape) == 1]
    return img


# --- one step's loss per method (official supervised.py, fixmatch.py, unimatch.py) --------------------------

def supervised_loss(model, batch, settings):
    x = batch["labeled"]
    loss_x = criterion_l(settings)(forward(model, x["image"]), x["mask"])
    return loss_x, {"loss_x": loss_x}


def fixmatch_loss(model, batch, settings):
    x, u, m = batch["labeled"], batch["unlabeled"], batch["mix"]
    thresh = settings["conf_thresh"]
    mask_mix, conf_mix = _mix_labels(model, m["weak"])
    img_s = _paste(u["strong1"], m["strong1"], u["box1"])
    num_lb, num_ulb = x["image"].shape[0], u["weak"].shape[0]
    pred_x, pred_u_w = forward(model, torch.cat((x["image"], u["weak"]))).split([num_lb, num_ulb])
    pred_u_s = forward(model, img_s)
    pred_u_w = pred_u_w.detach()
    conf_u_w, mask_u_w = pred_u_w.softmax(dim=1).max(dim=1)[0], pred_u_w.argmax(dim=1)
    mask_c, conf_c, ignore_c = _cutmixed(mask_u_w, conf_u_w, u["ignore"], mask_mix, conf_mix, m["ignore"],
                                         u["box1"])
    loss_x = criterion_l(settings)(pred_x, x["mask"])
    loss_s = _masked_u_loss(pred_u_s, mask_c, conf_c, ignore_c, thresh)
    return (loss_x + loss_s) / 2.0, {"loss_x": loss_x, "loss_s": loss_s}


def unimatch_loss(model, batch, settings):
    x, u, m = batch["labeled"], batch["unlabeled"], batch["mix"]
    thresh = settings["conf_thresh"]
    mask_mix, conf_mix = _mix_labels(model, m["weak"])
    img_s1 = _paste(u["strong1"], m["strong1"], u["box1"])
    img_s2 = _paste(u["strong2"], m["strong2"], u["box2"])
    num_lb, num_ulb = x["image"].shape[0], u["weak"].shape[0]
    preds, preds_fp = forward(model, torch.cat((x["image"], u["weak"])), need_fp=True)
    pred_x, pred_u_w = preds.split([num_lb, num_ulb])
    pred_u_w_fp = preds_fp[num_lb:]
    pred_u_s1, pred_u_s2 = forward(model, torch.cat((img_s1, img_s2))).chunk(2)
    pred_u_w = pred_u_w.detach()
    conf_u_w, mask_u_w = pred_u_w.softmax(dim=1).max(dim=1)[0], pred_u_w.argmax(dim=1)
    cut1 = _cutmixed(mask_u_w, conf_u_w, u["ignore"], mask_mix, conf_mix, m["ignore"], u["box1"])
    cut2 = _cutmixed(mask_u_w, conf_u_w, u["ignore"], mask_mix, conf_mix, m["ignore"], u["box2"])
    loss_x = criterion_l(settings)(pred_x, x["mask"])
    loss_s1 = _masked_u_loss(pred_u_s1, *cut1, thresh)
    loss_s2 = _masked_u_loss(pred_u_s2, *cut2, thresh)
    loss_fp = _masked_u_loss(pred_u_w_fp, mask_u_w, conf_u_w, u["ignore"], thresh)
    loss = (loss_x + loss_s1 * 0.25 + loss_s2 * 0.25 + loss_fp * 0.5) / 2.0
    return loss, {"loss_x": loss_x, "loss_s1": loss_s1, "loss_s2": loss_s2, "loss_fp": loss_fp}


LOSSES = {"supervised": supervised_loss, "fixmatch": fixmatch_loss, "unimatch": unimatch_loss}


# --- the loop: SGD with two groups, poly lr set after each iteration ----------------------------------------

def optimizer_for(model, lr, lr_multi):
    head = [p for name, p in model.named_parameters() if "backbone" not in name]
    return torch.optim.SGD([{"params": model.backbone.parameters(), "lr": lr},
                            {"params": head, "lr": lr * lr_multi}], lr=lr, momentum=0.9, weight_decay=1e-4)


def train_step(model, optimizer, batch, settings, method, iters, total_iters, lr, lr_multi):
    """One official iteration; returns (loss, terms, lr set afterwards)."""
    model.train()
    loss, terms = LOSSES[method](model, batch, settings)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    new_lr = lr * (1 - iters / total_iters) ** 0.9
    optimizer.param_groups[0]["lr"] = new_lr
    optimizer.param_groups[1]["lr"] = new_lr * lr_multi
    return loss, terms, new_lr
