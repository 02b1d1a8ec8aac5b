import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAW = REPO.parent / "shared" / "data" / "raw"


def trapsim(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "trapsim", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture
def raw() -> Path:
    if not RAW.is_dir():
        pytest.fail(f"real data directory missing: {RAW}")
    return RAW
