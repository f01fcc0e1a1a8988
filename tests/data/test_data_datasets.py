"""Dataset sources: ESC-50, AST JSON manifests, folder per class; metadata errors."""

from __future__ import annotations

import csv
import json

import pytest

from fastast_pl.data.clips import ClipSplits, check_files, check_nonempty
from fastast_pl.data.sources import ESC50Source, FolderSource, ManifestSource

from helpers.audio import folder_dataset, tone, write

CATEGORIES = [
    (0, "dog", True),
    (1, "rooster", True),
    (2, "pig", False),
    (3, "cow", False),
    (41, "chainsaw", True),
]


def make_esc50(root, write_audio=True):
    """A tiny ESC-50 tree: 5 categories x 5 folds, one clip each."""
    rows = []
    for fold in range(1, 6):
        for target, name, esc10 in CATEGORIES:
            filename = f"{fold}-{target:03d}-A-{target}.wav"
            rows.append([filename, fold, target, name, str(esc10), f"src{target}", "A"])
            if write_audio:
                write(root / "audio" / filename, tone(0.1, 16000, 200 + target * 20), 16000)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return root


def test_esc50_folds(tmp_path):
    root = make_esc50(tmp_path, write_audio=False)
    splits = ESC50Source(root, val_fold=3).read()
    assert splits.class_names == ["dog", "rooster", "pig", "cow", "chainsaw"]
    assert not splits.multi_label
    assert {c.path.name.split("-")[0] for c in splits.splits["val"]} == {"3"}
    assert splits.splits["test"] == splits.splits["val"]
    assert {c.path.name.split("-")[0] for c in splits.splits["train"]} == {"1", "2", "4", "5"}
    assert len(splits.splits["train"]) == 20
    chainsaw = next(c for c in splits.splits["train"] if "-041-" in c.path.name)
    assert chainsaw.labels == (4,)  # targets are renumbered densely in target order
    assert chainsaw.path == root / "audio" / chainsaw.path.name


def test_esc10_subset_remaps_targets_and_keeps_names(tmp_path):
    splits = ESC50Source(make_esc50(tmp_path, write_audio=False), val_fold=1, esc10=True).read()
    assert splits.class_names == ["dog", "rooster", "chainsaw"]
    labels = {c.path.name.split("-")[1]: c.labels for c in splits.splits["train"]}
    assert labels == {"000": (0,), "001": (1,), "041": (2,)}


def test_esc50_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nope'}.*prepare esc50"):
        ESC50Source(tmp_path / "nope").read()
    root = make_esc50(tmp_path / "esc", write_audio=False)
    with pytest.raises(ValueError, match="val_fold must be in 1..5, got 6"):
        ESC50Source(root, val_fold=6).read()
    splits = ESC50Source(root).read()
    with pytest.raises(FileNotFoundError, match=r"missing: .*2-000-A-0.wav.*\(25 in all\)"):
        check_files(splits)


def _labels_csv(path, mids):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "mid", "display_name"])
        for i, mid in enumerate(mids):
            writer.writerow([i, mid, f"name of {mid}"])
    return path


def _manifest(path, entries):
    path.write_text(json.dumps({"data": entries}))
    return path


def test_manifests_multi_label(tmp_path):
    label_csv = _labels_csv(tmp_path / "class_labels_indices.csv", ["/m/a", "/m/b", "/m/c"])
    abs_wav = str(tmp_path / "x.wav")
    train = _manifest(
        tmp_path / "train.json",
        [{"wav": "clips/1.wav", "labels": "/m/a,/m/c"}, {"wav": abs_wav, "labels": "/m/b"}],
    )
    val = _manifest(tmp_path / "val.json", [{"wav": "clips/2.wav", "labels": "/m/c"}])
    splits = ManifestSource(label_csv, train=train, val=val).read()
    assert splits.multi_label and splits.num_classes == 3
    assert splits.class_names[0] == "name of /m/a"
    assert splits.splits["train"][0].labels == (0, 2)
    assert splits.splits["train"][0].path == tmp_path / "clips" / "1.wav"  # relative to manifest
    assert str(splits.splits["train"][1].path) == abs_wav
    assert splits.splits["test"] == splits.splits["val"]  # test defaults to val


def test_single_label_manifest_is_inferred_single_label(tmp_path):
    label_csv = _labels_csv(tmp_path / "labels.csv", ["yes", "no"])
    train = _manifest(
        tmp_path / "t.json", [{"wav": "a.wav", "labels": "yes"}, {"wav": "b.wav", "labels": "no"}]
    )
    assert not ManifestSource(label_csv, train=train, val=train, test=train).read().multi_label
    assert (
        ManifestSource(label_csv, train=train, val=train, test=train, multi_label=True)
        .read()
        .multi_label
    )


def test_manifest_errors_name_entry(tmp_path):
    label_csv = _labels_csv(tmp_path / "labels.csv", ["/m/a"])
    bad_label = _manifest(
        tmp_path / "bad_label.json",
        [{"wav": "a.wav", "labels": "/m/a"}, {"wav": "b.wav", "labels": "/m/a,/m/zzz"}],
    )
    with pytest.raises(
        ValueError, match=r"bad_label.json entry 1 \(b.wav\): unknown labels \['/m/zzz'\]"
    ):
        ManifestSource(label_csv, train=bad_label).read()
    no_wav = _manifest(tmp_path / "no_wav.json", [{"path": "a.wav", "labels": "/m/a"}])
    with pytest.raises(ValueError, match=r'no_wav.json entry 0: no "wav" key'):
        ManifestSource(label_csv, train=no_wav).read()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        ManifestSource(label_csv, train=tmp_path / "broken.json").read()
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ManifestSource(tmp_path / "missing.csv", train=bad_label).read()


def test_folder_layout_with_seeded_split(tmp_path):
    root = folder_dataset(tmp_path, {"cat": 10, "bird": 10, "alarm": 5}, seconds=0.05)
    splits = FolderSource(root, val_fraction=0.2, test_fraction=0.2, seed=1).read()
    assert splits.class_names == ["alarm", "bird", "cat"]
    sizes = {k: len(v) for k, v in splits.splits.items()}
    assert sizes == {"train": 15, "val": 5, "test": 5}
    every = [c.path for v in splits.splits.values() for c in v]
    assert len(set(every)) == 25  # no clip in two splits
    cat = [c for c in splits.splits["val"] if c.path.parent.name == "cat"]
    assert len(cat) == 2 and all(c.labels == (2,) for c in cat)
    assert FolderSource(root, 0.2, 0.2, seed=1).read().splits == splits.splits  # deterministic


def test_folder_layout_with_split_folders(tmp_path):
    folder_dataset(tmp_path / "train", {"a": 2, "b": 2}, seconds=0.05)
    folder_dataset(tmp_path / "val", {"a": 1, "b": 1}, seconds=0.05)
    splits = FolderSource(tmp_path).read()
    assert splits.class_names == ["a", "b"]
    assert len(splits.splits["train"]) == 4 and splits.splits["test"] == splits.splits["val"]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        FolderSource(tmp_path / "absent").read()
    with pytest.raises(ValueError, match="no class sub-directories"):
        FolderSource(tmp_path).read()


def test_empty_split_is_reported():
    splits = ClipSplits({"train": [], "val": [], "test": []}, ["a"], False, source="my data")
    with pytest.raises(ValueError, match="my data: the 'train' split is empty"):
        check_nonempty(splits, ["train"])


# --------------------------------------------------------------------- description mistakes


def test_empty_class_folder_is_an_error_not_a_phantom_class(tmp_path):
    folder_dataset(tmp_path, {"cat": 3, "dog": 3}, seconds=0.05)
    (tmp_path / "bird").mkdir()
    with pytest.raises(ValueError, match=r"bird.*no audio files"):
        FolderSource(tmp_path).read()
    folder_dataset(tmp_path / "split" / "train", {"a": 2, "b": 2}, seconds=0.05)
    folder_dataset(tmp_path / "split" / "val", {"a": 1}, seconds=0.05)
    (tmp_path / "split" / "val" / "b").mkdir()
    with pytest.raises(ValueError, match=r"val/b.*no audio files"):
        FolderSource(tmp_path / "split").read()


def test_appledouble_files_are_not_audio(tmp_path):
    folder_dataset(tmp_path, {"cat": 4, "dog": 4}, seconds=0.05)
    (tmp_path / "cat" / "._cat_0.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # metadata
    splits = FolderSource(tmp_path, val_fraction=0.25, test_fraction=0.25).read()
    every = [c.path.name for v in splits.splits.values() for c in v]
    assert len(every) == 8 and not any(n.startswith("._") for n in every)
    assert any("._cat_0.wav" in n and "AppleDouble" in n for n in splits.notes)


def test_broken_symlink_and_non_audio_file_in_a_class_folder_are_reported(tmp_path):
    folder_dataset(tmp_path, {"cat": 4, "dog": 4}, seconds=0.05)
    (tmp_path / "cat" / "gone.wav").symlink_to(tmp_path / "missing.wav")
    (tmp_path / "dog" / "dog_9.mp4").write_bytes(bytes(64))
    splits = FolderSource(tmp_path, val_fraction=0.25, test_fraction=0.25).read()
    assert sum(len(v) for v in splits.splits.values()) == 8
    assert any("broken symbolic link" in n and "gone.wav -> " in n for n in splits.notes)
    assert any("without an audio extension" in n and "dog_9.mp4" in n for n in splits.notes)


def test_duplicate_label_id_or_index_in_the_label_csv(tmp_path):
    train = _manifest(tmp_path / "t.json", [{"wav": "a.wav", "labels": "/m/a"}])
    dup_mid = tmp_path / "dup_mid.csv"
    dup_mid.write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2,/m/a,A again\n")
    with pytest.raises(ValueError, match=r"dup_mid.csv line 4: mid '/m/a' .*line 2"):
        ManifestSource(dup_mid, train=train).read()
    dup_index = tmp_path / "dup_index.csv"
    dup_index.write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n1,/m/c,C\n")
    with pytest.raises(ValueError, match=r"dup_index.csv line 4: index '1' .*line 3"):
        ManifestSource(dup_index, train=train).read()
    gap = tmp_path / "gap.csv"
    gap.write_text("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")
    with pytest.raises(ValueError, match=r"gap.csv: the index column must be 0..1 without gaps"):
        ManifestSource(gap, train=train).read()


def test_empty_labels_in_a_single_label_manifest(tmp_path):
    label_csv = _labels_csv(tmp_path / "labels.csv", ["/m/a", "/m/b"])
    train = _manifest(
        tmp_path / "t.json",
        [{"wav": "a.wav", "labels": "/m/a"}, {"wav": "b.wav", "labels": ""}],
    )
    with pytest.raises(ValueError, match=r't.json entry 1 \(b.wav\): "labels" is empty'):
        ManifestSource(label_csv, train=train).read()
    # Declared multi-label: a clip of none of the classes is a legitimate negative.
    clips = ManifestSource(label_csv, train=train, multi_label=True).read().splits["train"]
    assert clips[1].labels == ()
