"""`classify` on a tiny HF AST directory: multi-label CSV, overrides, logging on and quiet."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from fastast_pl.cli import main
from fastast_pl.data.audio import load_audio
from fastast_pl.inference import AudioClassifier

from helpers.hf_tiny import LABELS, save_tiny_hf_ast


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    save_tiny_hf_ast(root / "hf")
    folder = root / "wavs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, seconds in (("a.wav", 0.3), ("b.wav", 2.0)):
        sf.write(folder / name, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    (folder / "notes.txt").write_text("not audio: ignored by the folder search")
    return root


def test_multi_label_csv_with_threshold_and_overrides(setup, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("x\ny\nz\n")
    out = tmp_path / "p.csv"
    argv = ["classify", str(setup / "hf"), str(setup / "wavs"), "--label-kind", "multi"]
    argv += ["--class-names", str(names), "--threshold", "0.3", "--top-k", "3", "--merge", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a.wav", "b.wav"]
    clf = AudioClassifier.from_pretrained(
        setup / "hf", multi_label=True, class_names=["x", "y", "z"], merge=2, device="cpu"
    )
    assert clf.model.merge_schedule().r == [2, 2]
    for row in rows:  # reference: sigmoid per window, max over windows, classes >= 0.3
        windows = clf.windows(load_audio(row["path"], 16000))
        with torch.no_grad():
            scores = torch.sigmoid(clf.model(windows)).amax(0)  # (C,)
        want = [n for n, s in sorted(zip("xyz", scores.tolist()), key=lambda t: -t[1]) if s >= 0.3]
        assert row["above_threshold"] == ";".join(want)
        assert row["label_1"] == "xyz"[int(scores.argmax())]
        assert float(row["score_1"]) == pytest.approx(float(scores.max()), abs=2e-6)
    assert clf.windows(load_audio(setup / "wavs" / "b.wav", 16000)).shape[0] == 6  # 198 frames


def test_logging_on_by_default_and_quiet(setup, capsys, monkeypatch):
    args = ["classify", str(setup / "hf"), str(setup / "wavs" / "a.wav")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "[fastast_pl] INFO" in captured.err and "merge r per layer" in captured.err
    assert captured.out.splitlines()[0].startswith("path,label_1,score_1")
    assert LABELS[0] in captured.out or LABELS[1] in captured.out or LABELS[2] in captured.out
    assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "INFO" not in err and "single- or multi-label" in err  # warnings stay
    monkeypatch.setenv("FASTAST_LOG_LEVEL", "ERROR")
    assert main(args) == 0
    assert "[fastast_pl]" not in capsys.readouterr().err


def test_user_errors_are_one_line(setup, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["classify", str(setup / "hf"), str(empty)]) == 2
    assert "holds no audio files" in capsys.readouterr().err
    assert main(["classify", str(setup / "hf"), str(setup / "wavs"), "--merge", "x,y"]) == 2
    assert "--merge" in capsys.readouterr().err


def test_csv_has_unix_line_endings(setup, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["classify", str(setup / "hf"), str(setup / "wavs"), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 3  # header + a.wav + b.wav
    capsys.readouterr()
    assert main(["classify", str(setup / "hf"), str(setup / "wavs" / "a.wav")]) == 0
    assert "\r" not in capsys.readouterr().out


def test_missing_input_is_an_error_before_the_model_loads(setup, tmp_path, capsys):
    out = tmp_path / "p.csv"
    typo = setup / "wavs" / "aa.wav"
    argv = ["classify", str(setup / "hf"), str(setup / "wavs" / "a.wav"), str(typo)]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"no such file or folder: {typo}" in err
    assert "merge r per layer" not in err and "LibsndfileError" not in err  # no model loaded
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_nothing_classifiable_exits_non_zero_without_a_csv(setup, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    sf.write(bad / "short.wav", np.zeros(160), 16000)  # 10 ms: shorter than a 25 ms window
    (bad / "broken.wav").write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "p.csv"
    assert main(["classify", str(setup / "hf"), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 file(s) could be classified" in err
    assert "short.wav" in err and "shorter than one 25.0 ms window" in err
    assert not out.exists()
    # one short clip among good ones is left out by name, the rest classified
    sf.write(bad / "ok.wav", 0.1 * np.random.default_rng(2).standard_normal(8000), 16000)
    assert main(["classify", str(setup / "hf"), str(bad), "--out", str(out)]) == 0
    assert "2 of 3 file(s) were bad audio" in capsys.readouterr().err
    assert [r["path"].rsplit("/", 1)[-1] for r in csv.DictReader(out.open())] == ["ok.wav"]
