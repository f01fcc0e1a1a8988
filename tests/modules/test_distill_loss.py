"""cmkd_loss against the CMKD and Hinton formulas written out by hand (explicit exp/log/sums).

CMKD (Gong et al. 2022): L = lambda*CE(y, softmax(z_s)) + (1-lambda)*KL(softmax(z_t/T) || softmax(z_s)),
the temperature on the teacher only and no T^2 (our kd_lambda weighs the KD term).
Hinton et al. 2015 (``kd_form="hinton"``): KL(softmax(z_t/T) || softmax(z_s/T)) * T^2.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastast_pl.losses import cmkd_loss

STUDENT = [[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]]
TEACHER = [[1.0, 0.0, 3.0], [-0.5, 2.5, 0.0]]


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _single_label_reference(target, lam, temp, form="hinton"):
    task = kd = 0.0
    for s, t, y in zip(STUDENT, TEACHER, target):
        p_s = _softmax(s)
        task += -sum(yk * math.log(pk) for yk, pk in zip(y, p_s))
        q_t = _softmax([v / temp for v in t])
        if form == "hinton":
            q_s = _softmax([v / temp for v in s])
            kd += sum(qt * (math.log(qt) - math.log(qs)) for qt, qs in zip(q_t, q_s)) * temp**2
        else:  # CMKD: the student at temperature 1, no T^2
            kd += sum(qt * (math.log(qt) - math.log(ps)) for qt, ps in zip(q_t, p_s))
    task, kd = task / len(STUDENT), kd / len(STUDENT)
    return (1 - lam) * task + lam * kd, task, kd


def _multi_label_reference(target, lam, temp, form="cmkd"):
    def bce(z, y):
        p = _sigmoid(z)
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    n = len(STUDENT) * len(STUDENT[0])
    task = sum(bce(z, y) for s, ys in zip(STUDENT, target) for z, y in zip(s, ys)) / n
    if form == "cmkd":  # teacher at T, student at 1, no T^2
        kd = (
            sum(
                bce(z, _sigmoid(tz / temp)) for s, t in zip(STUDENT, TEACHER) for z, tz in zip(s, t)
            )
            / n
        )
    else:  # Hinton: both at T, times T^2
        kd = (
            sum(
                bce(z / temp, _sigmoid(tz / temp))
                for s, t in zip(STUDENT, TEACHER)
                for z, tz in zip(s, t)
            )
            / n
            * temp**2
        )
    return (1 - lam) * task + lam * kd, task, kd


@pytest.mark.parametrize("lam,temp", [(0.5, 1.0), (0.3, 2.5), (1.0, 4.0)])
@pytest.mark.parametrize("soft", [False, True])
def test_single_label_matches_formula(lam: float, temp: float, soft: bool) -> None:
    target = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    if soft:  # mixup targets
        target = [[0.3, 0.0, 0.7], [0.0, 0.6, 0.4]]
    out = cmkd_loss(
        torch.tensor(STUDENT),
        torch.tensor(TEACHER),
        torch.tensor(target),
        False,
        lam,
        temp,
        form="hinton",
    )
    loss, task, kd = _single_label_reference(target, lam, temp)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["task"].item() == pytest.approx(task, rel=1e-5)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5)


@pytest.mark.parametrize("lam,temp", [(0.5, 1.0), (0.7, 2.0)])
def test_multi_label_matches_formula(lam: float, temp: float) -> None:
    target = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    out = cmkd_loss(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(target), True, lam, temp
    )
    loss, task, kd = _multi_label_reference(target, lam, temp)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["task"].item() == pytest.approx(task, rel=1e-5)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5)


@pytest.mark.parametrize("lam,temp", [(0.5, 1.0), (0.3, 2.5), (1.0, 4.0)])
@pytest.mark.parametrize("soft", [False, True])
def test_single_label_cmkd_form_is_the_default(lam: float, temp: float, soft: bool) -> None:
    """CMKD: temperature on the teacher only, no T^2 -- and that is what no form gives."""
    target = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    if soft:
        target = [[0.3, 0.0, 0.7], [0.0, 0.6, 0.4]]
    args = (torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(target), False, lam, temp)
    loss, task, kd = _single_label_reference(target, lam, temp, form="cmkd")
    for out in (cmkd_loss(*args), cmkd_loss(*args, form="cmkd")):
        assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
        assert out["task"].item() == pytest.approx(task, rel=1e-5)
        assert out["kd"].item() == pytest.approx(kd, rel=1e-5)
    if temp != 1.0:  # the two forms differ away from T = 1
        hinton = _single_label_reference(target, lam, temp, form="hinton")[2]
        assert abs(hinton - kd) > 1e-3


@pytest.mark.parametrize("lam,temp", [(0.5, 1.0), (0.7, 2.0)])
def test_multi_label_hinton_form(lam: float, temp: float) -> None:
    """Hinton's form for multi-label: BCE(z_s/T, sigmoid(z_t/T)) * T^2."""
    target = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    out = cmkd_loss(
        torch.tensor(STUDENT),
        torch.tensor(TEACHER),
        torch.tensor(target),
        True,
        lam,
        temp,
        form="hinton",
    )
    loss, task, kd = _multi_label_reference(target, lam, temp, form="hinton")
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["task"].item() == pytest.approx(task, rel=1e-5)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5)


def test_unknown_form_is_named() -> None:
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="form.*'soft'.*cmkd.*hinton"):
        cmkd_loss(s, s, s, False, form="soft")


@pytest.mark.parametrize("multi_label", [False, True])
def test_lambda_zero_is_the_plain_task_loss(multi_label: bool) -> None:
    target = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    ref = (_multi_label_reference if multi_label else _single_label_reference)(target, 0.0, 1.0)
    out = cmkd_loss(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(target), multi_label, 0.0, 3.0
    )
    assert out["loss"].item() == pytest.approx(ref[1], rel=1e-6)
    # and the teacher then has no influence at all
    other = cmkd_loss(
        torch.tensor(STUDENT), -torch.tensor(TEACHER), torch.tensor(target), multi_label, 0.0
    )
    assert out["loss"].item() == other["loss"].item()


def test_kd_is_zero_when_student_equals_teacher_single_label() -> None:
    logits = torch.tensor(TEACHER)
    out = cmkd_loss(logits, logits.clone(), torch.eye(3)[:2], False, 0.5, 2.0, form="hinton")
    assert out["kd"].abs().item() < 1e-6
    # CMKD's form compares softmax(z_t / T) with softmax(z_s): zero only at T = 1.
    assert cmkd_loss(logits, logits.clone(), torch.eye(3)[:2], False, 0.5, 1.0)["kd"] < 1e-6
    assert cmkd_loss(logits, logits.clone(), torch.eye(3)[:2], False, 0.5, 2.0)["kd"] > 1e-3


def test_gradient_flows_to_student_only() -> None:
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER, requires_grad=True)
    cmkd_loss(s, t, torch.eye(3)[:2], False)["loss"].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_bad_arguments_are_named() -> None:
    s, t = torch.zeros(2, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"\(2, 3\), \(2, 4\)"):
        cmkd_loss(s, t, torch.zeros(2, 3), False)
    with pytest.raises(ValueError, match="kd_lambda.*1.5"):
        cmkd_loss(s, s, s, False, kd_lambda=1.5)
    with pytest.raises(ValueError, match="temperature.*0"):
        cmkd_loss(s, s, s, False, temperature=0.0)
