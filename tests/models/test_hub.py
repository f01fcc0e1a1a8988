"""Hub model ids, offline: a tiny HF AST placed in a huggingface_hub cache, loaded by its id.

The cache is laid out as huggingface_hub lays it out (models--ORG--NAME/{blobs,snapshots,
refs}) and checked with huggingface_hub's own ``scan_cache_dir``; loading runs in a fresh
interpreter so that HF_HUB_OFFLINE and HF_HUB_CACHE are read the way a user's are.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import scan_cache_dir
from transformers import ASTFeatureExtractor

import fastast_pl

from helpers.hf_tiny import (
    FRAMES,
    LABELS,
    MEAN,
    MELS,
    STD,
    hf_logits,
    place_in_hub_cache,
    save_tiny_hf_ast,
)

REPO_ID = "tiny-org/tiny-ast"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

_SCRIPT = r"""
import json, sys, torch
from fastast_pl.cli import main
from fastast_pl.models.ast import ASTModel
from fastast_pl import AudioClassifier

out, fbank_file, wav = sys.argv[1:4]
model = ASTModel.from_pretrained("tiny-org/tiny-ast").eval()
with torch.no_grad():
    logits = model(torch.load(fbank_file))
clf = AudioClassifier.from_pretrained("tiny-org/tiny-ast", device="cpu")
try:
    ASTModel.from_pretrained("tiny-org/not-cached")
    missing = None
except FileNotFoundError as err:
    missing = str(err)
code = main(["classify", "tiny-org/tiny-ast", wav, "--top-k", "3", "--out", out + ".csv"])
json.dump({"logits": logits.tolist(), "names": clf.class_names,
           "features": clf.features.__dict__, "missing": missing, "code": code}, open(out, "w"))
"""


@pytest.mark.slow
def test_hub_id_offline_matches_the_hf_model(tmp_path):
    hf = save_tiny_hf_ast(tmp_path / "hf")
    cache = tmp_path / "hub"
    place_in_hub_cache(tmp_path / "hf", cache, REPO_ID, COMMIT)
    (cached,) = scan_cache_dir(cache).repos  # huggingface_hub reads the layout as its own
    assert cached.repo_id == REPO_ID and {r.commit_hash for r in cached.revisions} == {COMMIT}
    assert {f.file_name for r in cached.revisions for f in r.files} >= {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }

    fbank = torch.randn(2, FRAMES, MELS)
    torch.save(fbank, tmp_path / "fbank.pt")
    wav = tmp_path / "clip.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), PYTHONPATH="src")
    env.pop("HF_HOME", None)
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out), str(tmp_path / "fbank.pt"), str(wav)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    torch.testing.assert_close(
        torch.tensor(result["logits"]), hf_logits(hf, fbank), atol=1e-5, rtol=1e-4
    )
    assert result["names"] == LABELS
    features = result["features"]
    assert (features["mean"], features["std"], features["target_length"]) == (MEAN, STD, FRAMES)
    assert features["num_mel_bins"] == MELS and features["sample_rate"] == 16000
    assert result["code"] == 0
    rows = (tmp_path / "out.json.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(wav))
    missing = result["missing"]
    assert "tiny-org/not-cached" in missing and "HF_HUB_OFFLINE" in missing
    assert "hf download tiny-org/not-cached" in missing and str(cache) in missing


def test_features_follow_the_hf_feature_extractor(tmp_path):
    """The checkpoint's preprocessor_config.json drives our fbank: HF's extractor is the oracle."""
    save_tiny_hf_ast(tmp_path / "hf")
    classifier = fastast_pl.AudioClassifier.from_pretrained(tmp_path / "hf", device="cpu")
    extractor = ASTFeatureExtractor.from_pretrained(tmp_path / "hf")
    wave = 0.1 * np.random.default_rng(1).standard_normal(9000).astype(np.float32)
    want = extractor(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]
    (got,) = classifier.windows(torch.from_numpy(wave)[None])  # one window: padded clip
    torch.testing.assert_close(got, torch.from_numpy(want), atol=1e-5, rtol=1e-4)


def test_hub_unreachable_without_offline_does_not_say_unset_it(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE not set and the hub unreachable (a refused local port stands in for
    a machine without network): the message names the endpoint, not HF_HUB_OFFLINE."""
    from huggingface_hub import constants

    from fastast_pl.models.checkpoints.hub import resolve_source

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        resolve_source("tiny-org/not-cached")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" not in message, message
    assert "http://127.0.0.1:9" in message and "hf download tiny-org/not-cached" in message
    assert str(tmp_path / "hub") in message
