"""The command lines' one error policy, --version, validated flags, recipes and what installs.

Policy (anyppg_edge.cli._common): a user mistake prints one line naming the problem and the fix and
exits 2; a check that ran and failed exits 1; a bug exits 3 with its traceback only under --debug."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile

import pytest

from anyppg_edge import __version__
from anyppg_edge.cli import build_parser, main
from anyppg_edge.cli._common import EXIT_BUG, EXIT_USER_ERROR, parser, run
from anyppg_edge.config import list_recipes, load_recipe, nested_from_dict
from anyppg_edge.errors import ConfigError, UnknownNameError
from anyppg_edge.paths import REPO_ROOT


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"anyppg-edge {__version__}"


@pytest.mark.parametrize("argv, phrase", [
    (["export", "inspect", "nowhere.tflite"], "model artifact not found: nowhere.tflite"),
    (["export", "check", "nowhere.onnx"], "model artifact not found"),
    (["export", "inspect", "README.md"], "unknown artifact type '.md'"),
    (["calibration", "show", "/nonexistent-calibration-set"], "no manifest.json"),
    (["physiology", "--recipe", "no-such-recipe"], "no recipe 'no-such-recipe'"),
    (["pretrain", "--shards", "x", "--recipe", "physiology-headline"], "is for `physiology`, not `pretrain`"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, phrase, capsys):
    assert main(argv) == EXIT_USER_ERROR
    assert phrase in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, phrase", [
    (["pretrain", "--shards", "x", "--batch-size", "1"], "an integer >= 2"),
    (["pretrain", "--shards", "x", "--lr", "-1"], "a positive number"),
    (["pretrain", "--shards", "x", "--steps", "0"], "a positive integer"),
    (["physiology", "--steps-per-fold", "nan"], "is not a number"),
    (["physiology", "--fold", "1,x"], "comma-separated list"),
    (["physiology", "--crop-scale-min", "1.5"], "in [0, 1]"),
    (["distill", "--shards", "x", "--teacher", "t.pt", "--relational-temperature", "0"], "a positive number"),
    # issue 22: `summary --odr-hz 0` raised ZeroDivisionError; `replay --duration-s 0` replayed everything;
    # `summary --max-recordings 0` passed vacuously
    (["harness", "summary", "--artifact", "a.tflite", "--out", "o", "--odr-hz", "0"], "a positive number"),
    (["harness", "replay", "--artifact", "a.tflite", "--out", "o", "--duration-s", "0"], "a positive number"),
    (["harness", "summary", "--artifact", "a.tflite", "--out", "o", "--max-recordings", "0"], "a positive integer"),
    (["export", "bench", "a.tflite", "--runs", "0"], "a positive integer"),
    (["calibration", "build", "--n", "-3"], "a positive integer"),
])
def test_bad_flag_values_are_refused_at_parse_time(argv, phrase, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and phrase in capsys.readouterr().err


def _runner(exc: BaseException) -> argparse.ArgumentParser:
    ap = parser("probe", "test")

    def boom(_args):
        raise exc

    ap.set_defaults(func=boom)
    return ap


def test_missing_extra_names_the_extra(capsys):
    exc = ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    assert run(_runner(exc), []) == EXIT_USER_ERROR
    assert "pip install 'anyppg-edge[deploy]'" in _one_line(capsys.readouterr().err)


def test_a_bug_exits_3_and_shows_its_traceback_only_with_debug(capsys, monkeypatch):
    monkeypatch.delenv("ANYPPG_DEBUG", raising=False)
    assert run(_runner(ZeroDivisionError("oops")), []) == EXIT_BUG
    assert "internal error (a bug" in _one_line(capsys.readouterr().err)
    with pytest.raises(ZeroDivisionError):
        run(_runner(ZeroDivisionError("oops")), ["--debug"])
    assert run(_runner(ConfigError("bad value: use 3")), []) == EXIT_USER_ERROR


def test_check_that_fails_exits_1_not_2(capsys):
    ap = parser("probe", "test")
    ap.set_defaults(func=lambda _a: 1)
    assert run(ap, []) == 1


def test_recipes_load_nested_and_flags_override(monkeypatch, tmp_path):
    assert {"physiology-headline", "teacher-small", "distill-watch-k9"} <= set(list_recipes())
    from anyppg_edge.train.physiology import PhysiologyConfig

    got = {}

    def fake_run(cfg):
        got["cfg"] = cfg
        (cfg.out_dir / "report.md").write_text("report")

    monkeypatch.setattr("anyppg_edge.train.physiology.run_physiology", fake_run)
    argv = ["physiology", "--recipe", "physiology-headline", "--run-folds", "5", "--seed", "2", "--lr", "0.001"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    cfg = got["cfg"]
    recipe = load_recipe("physiology-headline", "physiology")
    assert isinstance(cfg, PhysiologyConfig) and cfg.run_folds == 5 and cfg.seed == 2  # flags win
    assert cfg.train.lr == 0.001 and cfg.train.max_steps == recipe["train"]["max_steps"]  # the rest is the recipe
    assert cfg.augment.eq_std == recipe["augment"]["eq_std"] and cfg.dropout_p == recipe["dropout_p"]
    with pytest.raises(ConfigError, match="unknown TrainConfig keys"):
        nested_from_dict(PhysiologyConfig, {"train": {"steps": 3}})
    with pytest.raises(UnknownNameError, match="no recipe"):
        load_recipe("nope", "physiology")


def test_every_packaged_recipe_builds_its_configs():
    from anyppg_edge.train.configs import AugmentConfig, DistillConfig, TrainConfig
    from anyppg_edge.train.physiology import PhysiologyConfig

    sections = {"train": TrainConfig, "augment": AugmentConfig, "distill": DistillConfig}
    for name in list_recipes():
        recipe = json.loads((REPO_ROOT / "anyppg_edge" / "recipes" / f"{name}.json").read_text())
        if recipe["command"] == "physiology":
            nested_from_dict(PhysiologyConfig, recipe["config"])
            continue
        for key, value in recipe["config"].items():
            if key in sections:
                nested_from_dict(sections[key], value)


def test_parser_builds_without_torch():
    code = "import sys; from anyppg_edge.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_command_has_help():
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert {"demo", "pretrain", "distill", "physiology", "export", "harness", "calibration"} <= set(sub.choices)


def test_the_wheel_installs_only_the_library(tmp_path):
    """No generic top-level `export` or `calibration_data` module; the calibration default and the
    recipes travel as package data; `anyppg-edge` is the console script."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(REPO_ROOT)], check=True, capture_output=True)
    (whl,) = tmp_path.glob("anyppg_edge-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"anyppg_edge", f"anyppg_edge-{__version__}.dist-info"}, tops
    assert any(n.endswith("deploy/calibration/default/windows.npy") for n in names)
    assert any(n.endswith("recipes/physiology-headline.json") for n in names)
    entry = zipfile.ZipFile(whl).read(f"anyppg_edge-{__version__}.dist-info/entry_points.txt").decode()
    assert "anyppg-edge = anyppg_edge.cli:main" in entry
