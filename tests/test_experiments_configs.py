"""experiments/: every config composes and parses; each dataset's recipes run one step on
small data written here in the dataset's own layout; the sweep files parse through the CLI."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from fastast_pl import cli
from fastast_pl.tools.sweep import check, spec
from fastast_pl.tools.sweep.run import plan_trials

from helpers.tiny_run import TINY_AST_ARGS

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
DATASETS = ("esc50", "audioset", "speechcommands")
METHODS = ("teacher", "ast_baseline", "fastast", "eval_pretrained")
MACHINES = ("cpu", "gpu", "slurm_ddp")


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """pytest's own argv would otherwise reach LightningCLI's check for mixed arguments."""
    monkeypatch.setattr("sys.argv", ["fastast_pl"])


def _cli(argv: list[str]) -> str:
    """Run `python -m fastast_pl ARGV` in-process; stdout (SystemExit 0 is success)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(argv)
        except SystemExit as err:
            assert err.code in (0, None), f"{argv} exited with {err.code}"
    return out.getvalue()


def _recipe_base(dataset: str) -> list[str]:
    """What every recipe of ``dataset`` composes first, in this order (see their headers)."""
    return [f"{dataset}/data", f"{dataset}/trainer", "callbacks"]


def _configs(*names: str) -> list[str]:
    args = []
    for name in names:
        args += ["--config", str(EXP / f"{name}.yaml")]
    return args


def test_every_yaml_in_experiments_is_covered():
    """A new config file must be added to the composition tests below."""
    found = {p.relative_to(EXP).with_suffix("").as_posix() for p in EXP.rglob("*.yaml")}
    covered = {
        "quickstart",
        "callbacks",
        "audioset/full",
        "audioset/original_labels",
        "audioset/ast_baseline_full",
        "audioset/fastast_full",
        "audioset/teacher_full",  # tests/modules/test_teacher_recipes.py
        "audioset/data",
        "demo/data",
        "demo/teacher",
        "demo/fastast",
        "demo/ast",
        "instruments/data",  # test_instruments_study_configs below
        "instruments/teacher",
        "instruments/ast",
        "instruments/student",
    }
    covered |= {f"{d}/data" for d in DATASETS} | {f"{d}/trainer" for d in DATASETS}
    covered |= {f"{d}/{m}" for d in DATASETS for m in METHODS}
    covered |= {f"machines/{m}" for m in MACHINES}
    covered |= {
        p.relative_to(EXP).with_suffix("").as_posix() for p in (EXP / "sweeps").glob("*.yaml")
    }
    assert found <= covered, f"configs without a test: {sorted(found - covered)}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_recipes_compose_and_print(dataset):
    """data + trainer + callbacks + method + machine compose (later files win) and
    --print_config shows the result."""
    subcommand = {"eval_pretrained": "test"}
    for i, method in enumerate(METHODS):
        machine = MACHINES[i % len(MACHINES)]
        names = [*_recipe_base(dataset), f"{dataset}/{method}", f"machines/{machine}"]
        text = _cli([subcommand.get(method, "fit"), *_configs(*names), "--print_config"])
        cfg = yaml.safe_load(text)
        data = yaml.safe_load((EXP / f"{dataset}/data.yaml").read_text())["data"]
        assert cfg["data"]["features"]["target_length"] == data["features"]["target_length"]
        # linked from the data (print_config leaves link targets out), never typed in a model config
        method_doc = yaml.safe_load((EXP / f"{dataset}/{method}.yaml").read_text())
        assert not {"target_length", "num_mel_bins", "num_classes", "multi_label"} & set(
            method_doc["model"]["init_args"]
        )
        assert cfg["trainer"]["plugins"][0]["class_path"].endswith("AtomicCheckpointIO")
        monitor = cfg["trainer"]["callbacks"][0]["init_args"]["monitor"]
        assert monitor == ("val/mAP" if dataset == "audioset" else "val/acc")
        # the shared callbacks are appended to the dataset's best-on-val checkpoint
        # (AudioSet recipes add their epoch-window weight averaging last: AST's for
        # ast_baseline and fastast, test_recipes_data_training.py; PSLA's for the teacher)
        averaged = dataset == "audioset" and method in ("teacher", "ast_baseline", "fastast")
        extra = ["EpochWindowAveraging"] if averaged else []
        assert [c["class_path"].rsplit(".", 1)[-1] for c in cfg["trainer"]["callbacks"]] == [
            "ModelCheckpoint",
            "ModelCheckpoint",
            "ResumeRNGState",
            "LearningRateMonitor",
            *extra,
        ]
        assert cfg["trainer"]["callbacks"][1]["init_args"]["save_last"] is True


def test_audioset_full_overlay_quickstart_and_demo():
    text = _cli(
        [
            "fit",
            *_configs(*_recipe_base("audioset"), "audioset/fastast", "audioset/full"),
            "--print_config",
        ]
    )
    cfg = yaml.safe_load(text)
    assert cfg["model"]["class_path"].endswith("DistillationModule")
    assert cfg["model"]["init_args"]["optim"]["lr"] == 1e-5  # full set: AST lr 1e-5
    assert cfg["model"]["init_args"]["merge"]["ratio"] == 0.1  # untouched by the overlay
    assert cfg["data"]["loader"]["balanced_sampling"] is True and cfg["trainer"]["max_epochs"] == 5
    assert cfg["data"]["source"]["init_args"]["train"].endswith("unbalanced_train.json")
    assert cfg["data"]["source"]["init_args"]["label_csv"].endswith("class_labels_indices.csv")
    quick = yaml.safe_load(_cli(["fit", *_configs("quickstart"), "--print_config"]))
    assert quick["data"]["source"]["class_path"].endswith("SyntheticSource")
    for stage in ("teacher", "fastast"):  # the demo's stages (run end to end in test_demo.py)
        demo = yaml.safe_load(
            _cli(["fit", *_configs("demo/data", f"demo/{stage}"), "--print_config"])
        )
        assert demo["data"]["source"]["class_path"].endswith("SyntheticSource")


def test_instruments_study_configs(tmp_path):
    """The distillation study's configs (docs/benchmarks.md) compose; the AST stage trains a
    step on WAVs in the layout scripts/render_instruments.py writes (split/class folders)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for name in ("flute", "piano"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for k in range(2):
                sf.write(folder / f"{name}_{k:03d}.wav", rng.normal(0, 0.1, 16000), 16000)
    data = ["--data.source.init_args.root", str(tmp_path), "--data.cache_dir", "null"]
    for stage in ("teacher", "student"):
        cfg = yaml.safe_load(
            _cli(["fit", *_configs("instruments/data", f"instruments/{stage}"), "--print_config"])
        )
        assert cfg["data"]["source"]["class_path"].endswith("FolderSource")
        assert cfg["trainer"]["max_epochs"] == 20  # the observation's setting
    _cli(
        ["fit", *_configs("instruments/data", "instruments/ast"), *data,
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
         "--trainer.default_root_dir", str(tmp_path / "runs")]
    )  # fmt: skip
    assert list((tmp_path / "runs").rglob("*.ckpt"))


@pytest.mark.parametrize("path", sorted((EXP / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.slow
def test_sweep_files_parse_through_the_cli(path, monkeypatch):
    """Every value of every sweep file is accepted by the CLI's parser (the model build, which
    needs the recipes' pretrained files, is covered in test_sweep.py), as are its first trials."""
    monkeypatch.chdir(ROOT)  # the command's --config paths are relative to the repository
    sw = spec.load_sweep(path)
    checker = check.TrialChecker(build_models=False)
    check.validate_sweep(sw, checker)
    for params in plan_trials(sw, count=6, seed=0):
        assert checker.trial_error(sw, params) is None
    names = {p.name for p in sw.params}
    assert any("merge." in n for n in names)  # they sweep the merge schedule


# ----------------------------------------------------------- one step per dataset
def _wav(path: Path, seconds: float, freq: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * math.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000)
    return str(path)


def _esc50(root: Path) -> list[str]:
    """ESC-50 layout: meta/esc50.csv + audio/*.wav; 3 classes, 5 folds, 1 clip per fold."""
    rows = []
    for target in range(3):
        for fold in range(1, 6):
            name = f"{fold}-{target}00-A-{target}.wav"
            _wav(root / "audio" / name, 0.5, 200.0 * (target + 1), fold * 10 + target)
            rows.append([name, fold, target, f"class{target}", "False", "x", "A"])
    (root / "meta").mkdir(parents=True)
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return [f"--data.source.init_args.root={root}"]


def _manifests(root: Path, multi_label: bool) -> list[str]:
    """AST JSON manifests + class_labels_indices.csv; multi-label clips for AudioSet."""
    mids = [f"/m/{i:02d}" for i in range(4)]
    root.mkdir(parents=True)
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        w.writerows([i, m, f"label {i}"] for i, m in enumerate(mids))
    args = [f"--data.source.init_args.label_csv={root / 'labels.csv'}"]
    for split, n in (("train", 8), ("valid", 4), ("test", 4)):
        data = []
        for i in range(n):
            labels = [mids[i % 4]] + ([mids[(i + 1) % 4]] if multi_label and i % 2 else [])
            wav = _wav(root / split / f"{i}.wav", 0.5, 150.0 * (i % 4 + 1), i)
            data.append({"wav": wav, "labels": ",".join(labels)})
        (root / f"{split}.json").write_text(json.dumps({"data": data}))
    args += [
        f"--data.source.init_args.train={root / 'train.json'}",
        f"--data.source.init_args.val={root / 'valid.json'}",
    ]
    if not multi_label:
        args.append(f"--data.source.init_args.test={root / 'test.json'}")
    return args


TINY = [
    "--data.loader.batch_size=2",
    "--data.loader.num_workers=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
TINY_TEACHER = [
    "--model.init_args.teacher.backbone=mobilenetv3_small_050",
    "--model.init_args.teacher.num_heads=2",
]


def _one_step(root: Path) -> list[str]:
    """One training step and one validation batch, saving last.ckpt under `root`."""
    return [
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger="
        + json.dumps(
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(root), "name": "", "version": ""},
            }
        ),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_each_recipe_runs_one_step(dataset, tmp_path):
    """teacher -> AST baseline -> FastAST (CMKD from that teacher) -> eval-only schedule on
    the baseline's checkpoint, each through the CLI with the dataset's own configs."""
    data_args = {
        "esc50": lambda: _esc50(tmp_path / "ESC-50"),
        "audioset": lambda: _manifests(tmp_path / "audioset", multi_label=True),
        "speechcommands": lambda: _manifests(tmp_path / "sc", multi_label=False),
    }[dataset]()
    base = [*TINY, *data_args]

    def run(sub, method, *extra):
        names = [*_recipe_base(dataset), f"{dataset}/{method}", "machines/cpu"]
        _cli([sub, *_configs(*names), *base, *extra])

    run("fit", "teacher", *TINY_TEACHER, *_one_step(tmp_path / "teacher"))
    teacher = tmp_path / "teacher" / "checkpoints" / "last.ckpt"
    assert teacher.is_file()
    run(
        "fit",
        "ast_baseline",
        *TINY_AST_ARGS,
        "--model.init_args.init_from=null",
        *_one_step(tmp_path / "ast"),
    )
    student = tmp_path / "ast" / "checkpoints" / "last.ckpt"
    assert student.is_file()
    run(
        "fit",
        "fastast",
        *TINY_AST_ARGS,
        "--model.init_args.init_from=null",
        f"--model.init_args.teacher_checkpoint={teacher}",
        "--trainer.fast_dev_run=1",
        f"--trainer.default_root_dir={tmp_path / 'fastast'}",
    )
    run(
        "test",
        "eval_pretrained",
        *TINY_AST_ARGS,
        f"--model.init_args.init_from={student}",
        "--trainer.fast_dev_run=1",
        f"--trainer.default_root_dir={tmp_path / 'eval'}",
    )
    assert not list(tmp_path.rglob("*.part"))  # no temporary checkpoint left behind
