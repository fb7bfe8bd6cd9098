"""What the reliability tests check of a refused command: exit code 2, one `error:` line, no traceback."""


def error_line(result) -> str:
    """The one `error:` line of a CLI result that must have refused its input (exit code 2)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]
