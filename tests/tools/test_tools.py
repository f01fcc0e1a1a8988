"""The `stats`, `prepare` and `visualize` tool subcommands, on data and models built here."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from torchaudio.compliance import kaldi

from fastast_pl.cli import main
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.prepare import URLS
from fastast_pl.merge_map import merge_view
from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints.record import RECORD_KEY, ast_arch_record, make_record
from fastast_pl.tome import apply_tome, tome_state
from fastast_pl.tools.common import read_features

SR = 16000


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * math.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _kaldi_fbank(path: Path, mel_bins: int) -> torch.Tensor:
    """The AST recipe written out: mean removed, 25/10 ms Hanning Kaldi fbank, no energy."""
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == SR
    wav = torch.from_numpy(data).unsqueeze(0)  # (1, N)
    return kaldi.fbank(
        wav - wav.mean(),
        htk_compat=True,
        sample_frequency=SR,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=mel_bins,
        dither=0.0,
        frame_shift=10,
        frame_length=25,
    )  # (frames, F)


def _esc50_folder(root: Path) -> dict[int, list[Path]]:
    """ESC-50 layout: one clip per fold and class, of different lengths; fold -> paths."""
    rows = [["filename", "fold", "target", "category", "esc10", "src_file", "take"]]
    by_fold: dict[int, list[Path]] = {}
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    for fold in range(1, 6):
        for target, name in ((0, "dog"), (1, "rain")):
            fn = f"{fold}-{target}-A-{target}.wav"
            seconds = 0.2 + 0.25 * fold + 0.1 * target  # 0.45 s .. 1.55 s
            sf.write(str(root / "audio" / fn), _tone(seconds, 300 + 150 * target, fold), SR)
            rows.append([fn, fold, target, name, "True", "x", "A"])
            by_fold.setdefault(fold, []).append(root / "audio" / fn)
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return by_fold


def _write_yaml(path: Path, content: dict) -> str:
    path.write_text(yaml.safe_dump(content))
    return str(path)


# ---------------------------------------------------------------------------- stats
def _esc50_source(root: Path) -> dict:
    return {"class_path": "fastast_pl.data.sources.ESC50Source", "init_args": {"root": str(root)}}


def test_stats_matches_kaldi_over_training_files(tmp_path, capsys):
    by_fold = _esc50_folder(tmp_path / "esc")
    base = _write_yaml(
        tmp_path / "base.yaml",
        {
            "trainer": {"max_epochs": 3},  # other sections are ignored
            "model": {"class_path": "not.checked.Here"},
            "data": {"source": _esc50_source(tmp_path / "esc"), "features": {"num_mel_bins": 16}},
        },
    )
    override = _write_yaml(
        tmp_path / "over.yaml",
        {"data": {"source": {"init_args": {"val_fold": 2}}, "features": {"target_length": 80}}},
    )
    assert main(["stats", "--config", base, "--config", override]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)["data"]["features"]

    # Independent: fold 2 is held out (override), the first 80 frames of each clip (longer
    # clips are cropped), 16 mel bins from the base file, padding never counted.
    train = [p for fold, paths in by_fold.items() if fold != 2 for p in paths]
    frames = torch.cat([_kaldi_fbank(p, 16)[:80] for p in train]).double()
    assert frames.shape[0] < 80 * len(train)  # some clips are shorter than target_length
    assert printed["mean"] == pytest.approx(frames.mean().item(), abs=2e-6)
    assert printed["std"] == pytest.approx(frames.std(unbiased=False).item(), abs=2e-6)
    assert f"over {len(train)} of {len(train)} training clips" in out


def test_stats_rejects_unknown_key_naming_it(tmp_path, capsys):
    _esc50_folder(tmp_path / "esc")
    cfg = _write_yaml(
        tmp_path / "bad.yaml",
        {"data": {"source": _esc50_source(tmp_path / "esc"), "features": {"norm_meen": 1.0}}},
    )
    assert main(["stats", "--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert "norm_meen" in err and str(tmp_path / "bad.yaml") in err and "\n" not in err
    no_data = _write_yaml(tmp_path / "trainer_only.yaml", {"trainer": {"max_epochs": 1}})
    assert main(["stats", "--config", no_data]) == 2
    assert "no data: section" in capsys.readouterr().err


def test_stats_generates_synthetic_data_first(tmp_path, capsys):
    data_dir = tmp_path / "synth"
    synthetic = {"num_classes": 2, "clips_per_class": 8, "clip_seconds": 0.3, "seed": 3}
    cfg = _write_yaml(
        tmp_path / "synth.yaml",
        {
            "data": {
                "source": {
                    "class_path": "fastast_pl.data.sources.SyntheticSource",
                    "init_args": {"root": str(data_dir), "generator": synthetic},
                }
            }
        },
    )
    assert main(["stats", "--config", cfg, "--max-clips", "3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["data"]["features"]
    assert len(list(data_dir.rglob("*.wav"))) == 16  # prepare_data() wrote the clips
    assert math.isfinite(printed["mean"]) and printed["std"] > 0


# ---------------------------------------------------------------------------- prepare
def _esc50_zip_helper():
    """The data tests' ESC-50 archive builder (tests/data is not a package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parents[1] / "data"))
        from test_data_prepare import _esc50_zip
    return _esc50_zip


def test_prepare_esc50_prints_settings_that_load(tmp_path, capsys):
    archive = _esc50_zip_helper()(tmp_path / "ESC-50-master.zip")
    out_dir = tmp_path / "esc50"
    assert main(["prepare", "esc50", "--out", str(out_dir), "--archive", str(archive)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"data": {"source": _esc50_source(out_dir)}}
    assert len(list((out_dir / "audio").glob("*.wav"))) == 10
    # The printed section is a working config for the other tools.
    cfg = _write_yaml(tmp_path / "cfg.yaml", printed)
    assert main(["stats", "--config", cfg]) == 0
    assert "over 8 of 8 training clips" in capsys.readouterr().out


def test_prepare_errors_are_one_line_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere.zip"
    assert main(["prepare", "esc50", "--out", str(tmp_path / "a"), "--archive", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err and "Traceback" not in err

    archive = _esc50_zip_helper()(tmp_path / "ESC-50-master.zip")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    assert main(["prepare", "esc50", "--out", str(busy), "--archive", str(archive)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(busy) in err and "not empty" in err and "\n" not in err
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]


# ---------------------------------------------------------------------------- visualize
TINY_ARCH = ASTArch(size="tiny", embed_dim=32, depth=3, num_heads=2, fstride=8, tstride=8)
TINY = dict(num_classes=3, input_tdim=64, input_fdim=32, arch=TINY_ARCH)
# 3 x 7 = 21 patches + 2 prefix tokens


def _partition(source: torch.Tensor, prefix: int) -> set[frozenset[int]]:
    """Groups of patch indices that share a token, from a (N, N0) source matrix."""
    rows = source[:, prefix:] > 0.5  # (N, P)
    return {frozenset(torch.nonzero(row).flatten().tolist()) for row in rows if row.any()}


@pytest.fixture()
def tiny_ckpt(tmp_path):
    """A Lightning-format checkpoint of a tiny AST with the record of its data's settings."""
    torch.manual_seed(0)
    model = ASTModel(**TINY)
    features = FeatureConfig(num_mel_bins=32, target_length=64, mean=-5.0, std=3.0)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = {
        "state_dict": state,
        RECORD_KEY: make_record(
            module="fastast_pl.modules.student.StudentModule",
            class_names=None,
            num_classes=model.num_classes,
            multi_label=False,
            target_length=64,
            num_mel_bins=32,
            features=features.to_dict(),
            arch=ast_arch_record(TINY_ARCH),
            state=state,
        ),
    }
    path = tmp_path / "tiny.ckpt"
    torch.save(ckpt, path)
    return path, model.state_dict()


def test_visualize_draws_the_traced_groups(tmp_path, tiny_ckpt, capsys):
    ckpt, state_dict = tiny_ckpt
    wav = tmp_path / "clip.wav"
    sf.write(str(wav), _tone(0.5, 440, 1), SR)  # 48 frames, padded to 64
    png = tmp_path / "out" / "merged.png"
    argv = ["visualize", str(wav), "--checkpoint", str(ckpt), "--merge", "3", "--layer", "2"]
    assert main([*argv, "--out", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    pixels = matplotlib.image.imread(png)
    # plot_merge_map: 10 x 4.8 inches at 110 dpi, whatever the input size (titles fit)
    assert pixels.shape[:2] == (528, 1100) and pixels.std() > 0

    view = merge_view(wav, ckpt, merge=3, layer=2)

    # Independent: the fbank by hand with the checkpoint's saved normalization, the model from
    # the saved weights, ToMe with r=3 in layers 0 and 1 only, and its traced sources.
    fb = _kaldi_fbank(wav, 32)
    fb = torch.cat([fb, torch.zeros(64 - fb.shape[0], 32)])  # (64, 32)
    fb = (fb - -5.0) / (2 * 3.0)
    torch.testing.assert_close(view.fbank, fb)
    model = ASTModel(**TINY)
    model.load_state_dict(state_dict)
    apply_tome(model.eval(), r=[3, 3, 0], trace_source=True)
    with torch.no_grad():
        model(fb.unsqueeze(0))
    source = tome_state(model).source[0]  # (23 - 6, 23)
    assert source.shape == (17, 23) and view.tokens_left == 17
    expected = _partition(source, 2)
    assert any(len(g) > 1 for g in expected)
    groups = view.groups.reshape(-1)  # (21,) token holding each patch, the map the plot draws
    plotted = {frozenset(np.flatnonzero(groups == t).tolist()) for t in np.unique(groups)}
    assert plotted == expected
    assert view.groups.shape == (3, 7)


def test_visualize_config_features_and_bad_layer(tmp_path, capsys):
    torch.manual_seed(1)
    # A plain state dict stores no strides: loading it assumes AST's 10 x 10 (grid 2 x 5).
    model = ASTModel(**{**TINY, "arch": replace(TINY_ARCH, fstride=10, tstride=10)})
    weights = tmp_path / "tiny.pt"  # and no feature settings either
    torch.save(model.state_dict(), weights)
    wav = tmp_path / "clip.wav"
    sf.write(str(wav), _tone(1.0, 880, 2), SR)  # 98 frames, cropped to 64
    cfg = _write_yaml(
        tmp_path / "data.yaml",
        {
            "data": {
                "source": {"class_path": "fastast_pl.data.sources.SyntheticSource"},
                "features": {"num_mel_bins": 32, "target_length": 64, "mean": -2.0, "std": 1.5},
            }
        },
    )
    view = merge_view(wav, weights, merge=2, features=read_features([cfg]))
    fb = (_kaldi_fbank(wav, 32)[:64] + 2.0) / 3.0
    torch.testing.assert_close(view.fbank, fb)
    assert view.layer == 3 and view.r == [2, 2, 2] and view.tokens_left == 12 - 6

    base = ["visualize", str(wav), "--checkpoint", str(weights), "--config", cfg]
    assert main([*base, "--merge", "2", "--layer", "4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--layer 4" in err and "1..3" in err and not (tmp_path / "x.png").exists()
    assert main([*base, "--merge", "6"]) == 2  # at most (10 patches) // 2 = 5 per layer
    assert "r=6" in capsys.readouterr().err


def test_visualize_says_which_part_of_a_longer_clip_it_shows(tmp_path, tiny_ckpt, capsys):
    """64 frames (0.64 s) of a 2 s clip: by default the first window, with a notice;
    --start/--seconds pick another part (the rest of the window zero padding)."""
    ckpt, _ = tiny_ckpt
    wav = tmp_path / "long.wav"
    samples = _tone(2.0, 440, 3)
    sf.write(str(wav), samples, SR)
    argv = ["visualize", str(wav), "--checkpoint", str(ckpt), "--merge", "2"]
    assert main([*argv, "--out", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert "showing 0.00-0.64 s of 2.00 s" in err and "--start/--seconds" in err

    view = merge_view(wav, ckpt, merge=2, start=1.0, seconds=0.3)
    piece = tmp_path / "piece.wav"  # the reference: that part of the clip as its own file
    sf.write(str(piece), samples[SR : SR + round(0.3 * SR)], SR)
    fb = (_kaldi_fbank(piece, 32) - -5.0) / (2 * 3.0)  # (28, 32), the checkpoint's mean/std
    assert view.valid_frames == fb.shape[0] == 28 and view.window == pytest.approx((1.0, 1.64))
    torch.testing.assert_close(view.fbank[:28], fb)
    torch.testing.assert_close(view.fbank[28:], torch.full((36, 32), 5.0 / 6.0))  # 0, normalised
    for bad, named in ((["--start", "2.5"], "--start 2.5"), (["--seconds", "0.9"], "0.64")):
        assert main([*argv, *bad, "--out", str(tmp_path / "b.png")]) == 2
        assert named in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_prepare_without_network_says_to_use_archive(tmp_path, capsys, monkeypatch):
    # Port 9 on this machine refuses the connection, as an offline machine's download fails.
    monkeypatch.setitem(URLS, "esc50", "http://127.0.0.1:9/ESC-50-master.zip")
    assert main(["prepare", "esc50", "--out", str(tmp_path / "ESC-50")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the "downloading" notice
    assert error.startswith("python -m fastast_pl prepare: error: could not download")
    assert "--archive" in error and "127.0.0.1:9" in error


def test_prepare_example_folder_is_the_configs(capsys, repo_root):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    config = Path(repo_root) / "experiments" / "esc50" / "data.yaml"
    root = yaml.safe_load(config.read_text())["data"]["source"]["init_args"]["root"]
    assert f"--out {root} " in " ".join(capsys.readouterr().out.split())
