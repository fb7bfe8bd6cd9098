"""What the CLI tests share: the checks of a refused command (exit code 2, one `error:` line, no
traceback) and a tiny trained run to work on."""


def error_line(result) -> str:
    """The one `error:` line of a CLI result that must have refused its input (exit code 2)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def train_tiny(root, recipe: str, overrides, data_dir):
    """`bindiff train recipes/<recipe>.yaml <overrides>` into ``root``; its run directory and result."""
    from pathlib import Path

    from typer.testing import CliRunner

    from bindiff.cli import app

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    result = CliRunner().invoke(app, ["train", str(recipes / f"{recipe}.yaml"), *overrides, f"output.root={root}",
                                      "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (Path(root) / recipe).iterdir()
    return run_dir, result
