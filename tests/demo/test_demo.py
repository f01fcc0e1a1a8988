"""`python -m fastast_pl demo` end to end, on a shrunken copy of the demo's configs.

Checks the table's shape, the run directories and the pictures, not the numbers (those
are measured on the full configs and reported in README / docs/benchmarks.md).
"""

import json
from pathlib import Path

import pytest
import yaml

from fastast_pl.demo import CONFIG_FILES, main


def _shrink(src: Path, dst: Path, tmp_path: Path) -> None:
    """Copy a demo config with tiny data / model / epochs, paths inside tmp_path."""
    config = yaml.safe_load(src.read_text())
    if "data" in config:
        data = config["data"]
        data["cache_dir"] = str(tmp_path / "cache")
        data["loader"].update(num_workers=0, batch_size=8)
        data["features"].update(target_length=64, num_mel_bins=32)
        source = data["source"]["init_args"]
        source["root"] = str(tmp_path / "synthetic")
        source["generator"].update(num_classes=3, clips_per_class=8, clip_seconds=0.5)
    if "trainer" in config:
        config["trainer"].update(max_epochs=1, enable_progress_bar=False)
    ast = config.get("model", {}).get("init_args", {}).get("ast")
    if ast:
        ast.update(embed_dim=32, depth=2, num_heads=2)
    dst.write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_demo_runs_all_stages_prints_the_table_and_draws(tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in CONFIG_FILES:
        _shrink(Path("experiments/demo") / name, configs / name, tmp_path)
    root = tmp_path / "runs"

    argv = ["--configs", str(configs), "--root", str(root), "--timing-batch", "4", "--seed", "1"]
    # depth 2 and 23 tokens cannot reach 2x fewer FLOPs with a constant r
    assert main([*argv, "--timing-rounds", "1", "--flop-targets", "1.2", "1.4"]) == 0

    out = capsys.readouterr().out
    assert "FastAST demo" in out
    table = [line for line in out.splitlines() if line.startswith("│")]
    names = ("CNN teacher", "AST, no merging", "AST, ToMe r=", "labels only", "CMKD")
    for name in names:
        assert any(name in line for line in table), name
    # teacher, AST unmerged, two off-the-shelf schedules, the labels-only control, CMKD
    off_the_shelf = [
        ln for ln in table if "ToMe r=" in ln and "CMKD" not in ln and "labels" not in ln
    ]
    assert len(off_the_shelf) >= 2
    assert "test acc" in out and "clips/s" in out and "speed-up" in out
    assert out.count("target met") + out.count("target NOT met") >= 3
    stages = ("teacher", "ast", "test_ast", "student", "test_student", "student_labels")
    for stage in (*stages, "test_student_labels"):
        assert list((root / stage).rglob("config.yaml")), stage
    # the label-scarce setting: a quarter of the labels, with and without the teacher
    for stage in ("student_quarter", "student_quarter_labels"):
        config = yaml.safe_load(next((root / stage).rglob("config.yaml")).read_text())
        assert config["data"]["unlabeled"]["labeled_fraction"] == 0.25, stage
    summary = json.loads((root / "summary.json").read_text())
    names = [row["name"] for row in summary["rows"]]
    assert names[-2].endswith("25% labels only") and names[-1].endswith("25% labels + CMKD")
    assert "with 25% of the labels, labels only gave" in out.replace("\n", " ")
    for picture in ("pareto.png", "merge_map.png"):
        path = root / picture
        assert path.is_file() and path.stat().st_size > 10_000, picture
        assert str(path) in out.replace("\n", ""), picture
    assert (root / "summary.json").is_file()
    # --seed reaches every stage's run (it comes after the configs' seed_everything: 0)
    for config in root.rglob("config.yaml"):
        assert yaml.safe_load(config.read_text())["seed_everything"] == 1, config
