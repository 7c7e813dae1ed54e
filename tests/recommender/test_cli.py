from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recommender.cli import build_parser, main
from recommender.contract import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_REGISTRY

COMMANDS = ("generate", "train", "merge", "finish", "evaluate", "register", "promote", "rollback", "list", "serve",
            "pipeline")  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "exit codes" in capsys.readouterr().out


def test_module_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "recommender", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("recommender ")


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--orders", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 0 and err.startswith("error: ") and "missing.csv" in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["generate", "--out", "x", "--orders", "-5"], "--orders"),
        (["serve", "--registry", "r", "--model", "m", "--poll-seconds", "0"], "--poll-seconds"),
        (["serve", "--registry", "r", "--model", "m", "--port", "70000"], "--port"),
        (["train", "--orders", "o", "--out", "a", "--similarity", "jaccard"], "--similarity"),
    ],
)
def test_argparse_rejects_bad_values(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_BAD_INPUT
    assert flag in capsys.readouterr().err


def test_registry_flags_required_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.delenv("RECOMMENDER_REGISTRY", raising=False)
    monkeypatch.delenv("RECOMMENDER_MODEL", raising=False)
    assert main(["list", "--model", "m"]) == EXIT_BAD_INPUT
    assert "RECOMMENDER_REGISTRY" in capsys.readouterr().err
    monkeypatch.setenv("RECOMMENDER_REGISTRY", str(tmp_path / "env"))
    monkeypatch.setenv("RECOMMENDER_MODEL", "from-env")
    args = build_parser().parse_args(["list"])
    assert (args.registry, args.model) == (tmp_path / "env", "from-env")
    args = build_parser().parse_args(["list", "--registry", "/flag", "--model", "flag"])
    assert (str(args.registry), args.model) == ("/flag", "flag")  # flags win


def test_commands_chain(tmp_path: Path, small_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art, reg = tmp_path / "art", tmp_path / "reg"
    orders = str(small_data / "orders.csv")
    assert main(["train", "--orders", orders, "--out", str(art), "--similarity", "tfidf", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["similarity"] == "tfidf"
    assert main(["evaluate", "--artifact", str(art), "--orders", orders, "--min-lift", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lift_ndcg"] > 0.1
    # An impossible gate: distinct exit code, one line naming the flag.
    assert main(["evaluate", "--artifact", str(art), "--orders", orders, "--min-lift", "100"]) == EXIT_GATE_FAILED
    assert "--min-lift" in capsys.readouterr().err
    assert main(["register", "--registry", str(reg), "--model", "m", "--artifact", str(art)]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    assert main(["promote", "--registry", str(reg), "--model", "m", "--version", version[:10]]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert main(["list", "--registry", str(reg), "--model", "m"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["aliases"] == {"production": version}
    assert listing["versions"][0]["metrics"]["lift_ndcg"] == report["lift_ndcg"]
    assert main(["rollback", "--registry", str(reg), "--model", "m"]) == EXIT_REGISTRY
    assert "no earlier version" in capsys.readouterr().err


def test_evaluate_refuses_other_data(tmp_path: Path, small_artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "o.csv"
    other.write_text("customer_id,book_id\nc1,zzz\nc1,yyy\n")
    assert main(["evaluate", "--artifact", str(small_artifact), "--orders", str(other)]) == EXIT_BAD_INPUT
    assert "other books" in capsys.readouterr().err


def test_pipeline_gate_failure_registers_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "reg"
    code = main(["pipeline", "--workdir", str(tmp_path / "w"), "--registry", str(reg), "--model", "m",
                 "--customers", "300", "--books", "60", "--orders", "3000", "--min-lift", "1000"])  # fmt: skip
    assert code == EXIT_GATE_FAILED
    assert not (reg / "m" / "versions").exists() or not list((reg / "m" / "versions").iterdir())
