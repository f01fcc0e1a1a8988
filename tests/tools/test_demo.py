"""`python -m fastast_pl demo` end to end, on a shrunken copy of the demo's configs."""

from pathlib import Path

import yaml

from fastast_pl.tools.demo import main


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
        config["model"]["init_args"]["merge"] = 3
    dst.write_text(yaml.safe_dump(config))


def test_demo_runs_all_stages_and_prints_the_table(tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("data.yaml", "teacher.yaml", "fastast.yaml"):
        _shrink(Path("experiments/demo") / name, configs / name, tmp_path)

    assert main(["--configs", str(configs), "--root", str(tmp_path / "runs")]) == 0

    out = capsys.readouterr().out
    assert "FastAST demo" in out
    assert (
        "CNN teacher" in out
        and "no merging" in out
        and "merge r=3 (trained)" in out
        and "merge r=6 (test only)" in out
    )
    # Three stages, each in its own run directory under --root.
    for stage in ("teacher", "student", "test"):
        assert list((tmp_path / "runs" / stage).rglob("config.yaml")), stage
