"""The teacher zoo's PaSST: a tiny PaSST built by hear21passt's own constructor, its weights
saved to a local file, teaches a merged student through a real Trainer, hearing the batch's
clean waveform through PaSST's mel front-end at 32 kHz. Oracle: hear21passt's own pipeline
(``PasstBasicWrapper`` around its ``AugmentMelSTFT``, set up as its ``base.py`` does, and the
in-memory model) on the same clips read from their files."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hear21passt.models.passt import PaSST
from hear21passt.models.preprocess import AugmentMelSTFT
from hear21passt.wrapper import PasstBasicWrapper

from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.models.passt_teacher import PasstArch, load_passt_teacher

from helpers.audio import tone, write
from helpers.distill import T, record_teacher_targets, tiny_student, tiny_trainer
from helpers.tiny_run import run, tiny

DATA_RATE = 16000  # PaSST hears 32 kHz: the teacher resamples
SPAN = (T - 1) * 160 + 400  # samples under the fbank's T frames (10 ms shift, 25 ms window)
# 66 frames of PaSST's 10 ms hop for SPAN at 32 kHz: 8 x 8 patches on a 4 x 10 grid.
TINY = PasstArch(
    num_classes=4,
    embed_dim=16,
    depth=1,
    num_heads=2,
    patch_size=8,
    fstride=8,
    tstride=8,
    input_tdim=80,
    n_mels=32,
)


def _hear21passt_net(arch: PasstArch, seed: int = 0) -> PaSST:
    """hear21passt's PaSST of ``arch``, with weights large enough that the logits differ."""
    torch.manual_seed(seed)
    net = PaSST(
        img_size=(arch.n_mels, arch.input_tdim),
        patch_size=arch.patch_size,
        stride=(arch.fstride, arch.tstride),
        num_classes=arch.num_classes,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        distilled=True,
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net.eval()


def _save(net: PaSST, path, wrap: str | None = None):
    state = net.state_dict()
    torch.save({wrap: state} if wrap else state, path)
    return path


def _dm(root, **kwargs) -> AudioDataModule:
    for c in range(4):
        for i in range(2):
            wave = tone(0.6, DATA_RATE, 220 + 700 * c + 90 * i, seed=i)
            write(root / "train" / f"c{c}" / f"{i}.wav", wave, DATA_RATE)
        write(
            root / "val" / f"c{c}" / "0.wav", tone(0.6, DATA_RATE, 260 + 700 * c, seed=7), DATA_RATE
        )
    features = FeatureConfig(num_mel_bins=32, target_length=T, mean=-4.27, std=4.57)
    return AudioDataModule(
        FolderSource(str(root)),
        features=features,
        loader=LoaderConfig(batch_size=4),
        waveforms=True,
        **kwargs,
    )


def _hear21passt_pipeline(net: PaSST) -> PasstBasicWrapper:
    """hear21passt's own pipeline: its wrapper, its front-end as base.py sets it up (fmax
    left to its default), in eval mode."""
    mel = AugmentMelSTFT(
        n_mels=32,
        sr=32000,
        win_length=800,
        hopsize=320,
        n_fft=1024,
        freqm=48,
        timem=192,
        htk=False,
        fmin=0.0,
        fmax=None,
        norm=1,
        fmin_aug_range=10,
        fmax_aug_range=2000,
    )
    return PasstBasicWrapper(mel=mel, net=net, mode="logits").eval()


def _reference(net: PaSST, path) -> torch.Tensor:
    """hear21passt's own pipeline on the clip file, the clip resampled to 32 kHz."""
    audio, rate = sf.read(str(path), dtype="float32")
    clip = np.zeros(SPAN, dtype=np.float32)
    clip[: min(SPAN, len(audio))] = audio[:SPAN]
    wave = torchaudio.functional.resample(torch.from_numpy(clip)[None], rate, 32000)  # (1, N)
    with torch.no_grad():
        return _hear21passt_pipeline(net)(wave)[0]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_passt_teacher_targets_equal_hear21passt_pipeline(tmp_path, offline, caplog) -> None:
    net = _hear21passt_net(TINY)
    weights = _save(net, tmp_path / "passt-tiny.pt")
    dm = _dm(tmp_path / "data")
    L.seed_everything(0, verbose=False)
    module = tiny_student(str(weights), teacher_passt=TINY)
    used = record_teacher_targets(module)
    with caplog.at_level(logging.INFO, logger="fastast_pl.models.passt_teacher"):
        tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(module, datamodule=dm)
    assert "PaSST (depth 1, embed_dim 16, 4 classes" in caplog.text
    assert "32 bins, 0-15000 Hz, hop 320 at 32000 Hz; time table 80 frames = 0.8 s" in caplog.text
    assert "at 16000 Hz, resampled to its 32000 Hz" in caplog.text
    assert "upsampled to the teacher's 32000 Hz, so it hears nothing above 8000 Hz" in caplog.text
    # The file names no classes: the order is the data's, said once.
    named = "names no classes: its class k is taken as the data's class k (0: 'c0', 1: 'c1', 2:"
    assert named in caplog.text and caplog.text.count("names no classes") == 1
    assert any(module.model.train().merge_schedule().r)  # the student merges tokens
    assert module.hears_waveforms and module.global_step == 2  # two optimiser steps

    clips = dm.datasets["train"].clips
    index = torch.cat([i for i, _ in used])
    teacher = torch.cat([t for _, t in used])  # (N, 4)
    assert sorted(index.tolist()) == list(range(8))
    assert teacher.std(0).min() > 0.05  # the clips get different targets: the check can fail
    for row, i in enumerate(index.tolist()):
        expected = _reference(net, clips[i].path)
        torch.testing.assert_close(teacher[row], expected, rtol=1e-4, atol=1e-4)


def test_wrapped_weights_load_the_same_and_clips_outside_its_time_table_are_refused(
    tmp_path, offline
) -> None:
    net = _hear21passt_net(TINY)
    plain = load_passt_teacher(_save(net, tmp_path / "plain.pt"), TINY, DATA_RATE)
    wrapped = load_passt_teacher(_save(net, tmp_path / "w.pt", wrap="model"), TINY, DATA_RATE)
    wave = torch.randn(2, SPAN)  # (B, N) at the data's rate
    torch.testing.assert_close(plain(wave), wrapped(wave), rtol=0, atol=0)
    # The table holds 80 // 8 = 10 time patches: (frames - 8) // 8 + 1 <= 10 for up to 87
    # frames. 13920 samples at 16 kHz: 27840 at 32 kHz, 27839 after pre-emphasis, centred
    # frames at hop 320: 1 + 27839 // 320 = 87 (more than input_tdim 80, as a 10 s clip's
    # 1000 frames are for the released 998), taught as hear21passt's own pipeline does.
    fits = torch.randn(1, 13_920)
    with torch.no_grad():
        expected = _hear21passt_pipeline(net)(torchaudio.functional.resample(fits, 16000, 32000))
    torch.testing.assert_close(plain(fits), expected, rtol=1e-4, atol=1e-4)
    # One sample more gives 88 frames, 11 patches (hear21passt: a tensor broadcast error);
    # 1120 samples give 7 frames, less than one patch (hear21passt: a convolution error).
    with pytest.raises(ValueError, match=r"88 frames .* places 8 to 87 frames \(10 patches"):
        plain(torch.randn(1, 13_921))
    with pytest.raises(ValueError, match=r"7 frames .* places 8 to 87 frames"):
        plain(torch.randn(1, 1_120))


def test_weights_of_another_arch_or_class_count_are_refused(tmp_path, offline) -> None:
    dm = _dm(tmp_path / "data")
    other = dataclasses.replace(TINY, depth=2, num_classes=5)
    weights = _save(_hear21passt_net(other), tmp_path / "passt-other.pt")
    with pytest.raises(ValueError) as err:
        tiny_trainer(tmp_path).fit(tiny_student(str(weights), teacher_passt=TINY), datamodule=dm)
    message = str(err.value)
    assert str(weights) in message
    assert "configures (depth 1, embed_dim 16, 4 classes" in message
    assert "the file holds depth 2, embed_dim 16, 5 classes" in message
    assert "blocks.1.norm1.weight" in message  # an unexpected key, named
    assert "head.1.weight: (5, 16) in the file, (4, 16) in the model" in message
    assert "the patch grid is n_mels // fstride x input_tdim // tstride" in message  # the keys

    # Another patch stride (the s16 files against the s10 defaults, in small): another grid.
    strided = _save(_hear21passt_net(dataclasses.replace(TINY, fstride=4)), tmp_path / "f4.pt")
    with pytest.raises(ValueError) as err:
        load_passt_teacher(strided, TINY, DATA_RATE)
    assert "patch grid 4 x 10; the file holds" in str(err.value)
    assert "frequency x time patch grid 8 x 10; the patch grid is" in str(err.value)
    assert "freq_new_pos_embed: (1, 16, 8, 1) in the file, (1, 16, 4, 1)" in str(err.value)

    # The weights fit the configured PaSST, but its 5 classes are not the data's 4.
    with pytest.raises(ValueError, match="num_classes: teacher 5, data 4"):
        tiny_trainer(tmp_path).fit(tiny_student(str(weights), teacher_passt=other), datamodule=dm)


def test_the_cli_config_selects_and_loads_the_passt_teacher(tmp_path, offline) -> None:
    weights = _save(_hear21passt_net(dataclasses.replace(TINY, num_classes=3)), tmp_path / "p.pt")
    passt = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY) if f.name != "fmax"}
    argv = [
        "fit",
        *tiny(tmp_path / "data", tmp_path / "runs"),
        "--model=fastast_pl.modules.distill.DistillationModule",
        f"--model.init_args.teacher_checkpoint={weights}",
        "--model.init_args.teacher_passt=" + json.dumps({**passt, "num_classes": 3}),
        "--data.waveforms=true",
    ]
    cli = run(argv)
    assert cli.model.teacher_passt == dataclasses.replace(TINY, num_classes=3)
    assert cli.model.hears_waveforms and cli.model.teacher.info.kind == "passt"
    assert cli.trainer.global_step == 1

    # The distilled checkpoint (without the teacher's weights) tests with the teacher beside.
    tested = run(["test", *argv[1:], "--ckpt_path", "last"])
    assert "test/teacher_acc" in tested.trainer.callback_metrics
    assert not any(
        k.startswith("teacher.")
        for k in torch.load(tested.trainer.ckpt_path, weights_only=False)["state_dict"]
    )


def test_cached_passt_logits_are_reused_and_keyed_by_its_settings(tmp_path, offline) -> None:
    weights = _save(_hear21passt_net(TINY), tmp_path / "passt-tiny.pt")
    dm = _dm(tmp_path / "data")
    module = tiny_student(str(weights), teacher_passt=TINY, cache_teacher_logits=True)
    tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(module, datamodule=dm)
    assert module.cache_counts == {"hits": 8, "misses": 8}  # epoch 2 from the clean clips' cache

    same = tiny_student(str(weights), teacher_passt=TINY, cache_teacher_logits=True)
    tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(same, datamodule=dm)
    assert same._cache is not None and same._cache.status == "hit"

    # The same file read through another front-end (a narrower band) gives other logits.
    narrower = dataclasses.replace(TINY, fmax=8000.0)
    other = tiny_student(str(weights), teacher_passt=narrower, cache_teacher_logits=True)
    tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(other, datamodule=dm)
    assert other._cache is not None and other._cache.status == "rebuild"


def test_the_label_kind_it_is_said_to_have_is_checked_against_the_data(
    tmp_path, offline, caplog
) -> None:
    """A weights file does not record its label kind: ``multi_label`` says it, and a head
    trained multi-label (every hear21passt release) is refused against single-label data."""
    weights = str(_save(_hear21passt_net(TINY), tmp_path / "passt-tiny.pt"))
    dm = _dm(tmp_path / "data")  # single-label folders
    multi = dataclasses.replace(TINY, multi_label=True)
    with pytest.raises(ValueError, match="multi_label: teacher True, data False"):
        tiny_trainer(tmp_path).fit(tiny_student(weights, teacher_passt=multi), datamodule=dm)

    for said, warned in ((False, False), (None, True)):
        caplog.clear()
        arch = dataclasses.replace(TINY, multi_label=said)
        with caplog.at_level(logging.WARNING):
            tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
                tiny_student(weights, teacher_passt=arch), datamodule=dm
            )
        assert ("does not say whether it is multi-label" in caplog.text) is warned


@pytest.mark.parametrize(
    ("settings", "found"),
    [
        ({"fmax": 20000.0}, "fmin 0 Hz to fmax 20000 Hz (fmax 20000.0)"),
        ({"sample_rate": 16000, "fmax": 9000.0}, "= 8000 Hz (sample_rate 16000)"),
        ({"fmin": 16000.0}, "fmin 16000 Hz to fmax 15000 Hz (fmax None)"),
    ],
)
def test_a_mel_band_its_front_end_cannot_build_is_refused_when_configured(settings, found) -> None:
    """hear21passt's front-end (Kaldi's mel banks) would refuse it only at the first batch."""
    with pytest.raises(ValueError, match=r"teacher_passt: the mel band") as err:
        dataclasses.replace(TINY, **settings)
    assert found in str(err.value)
    assert dataclasses.replace(TINY, sample_rate=16000).band_top == 7000  # its default fits


def test_passt_weights_without_teacher_passt_point_to_it(tmp_path, offline) -> None:
    """Read as an AST checkpoint (the default), a PaSST file is an unknown format: the error
    says which setting reads it."""
    weights = _save(_hear21passt_net(TINY), tmp_path / "passt-tiny.pt")
    dm = _dm(tmp_path / "data")
    with pytest.raises(ValueError, match="unknown checkpoint format") as err:
        tiny_trainer(tmp_path).fit(tiny_student(str(weights)), datamodule=dm)
    assert "key 'time_new_pos_embed' is PaSST's" in str(err.value)
    assert "set model.init_args.teacher_passt" in str(err.value)
