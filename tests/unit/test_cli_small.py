"""Small things users notice: --version, 0644 files, no BrokenPipeError traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emodistill import __version__
from emodistill._fs import atomic_write
from emodistill.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"emodistill {__version__}"


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write(tmp_path / "results.json", lambda f: f.write("{}"))
        b = atomic_write(tmp_path / "model.pt", lambda f: f.write(b"x"), mode="wb")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 == stat.S_IMODE(b.stat().st_mode)


def test_a_closed_pipe_ends_quietly():
    code = textwrap.dedent("""
        import emodistill.cli as cli
        def many(a):
            for i in range(200000):
                print(f'{{"row": {i}}}')
            return 0
        cli.listing._cmd_list = many
        raise SystemExit(cli.main(["list"]))
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert p.stdout.readline().startswith(b'{"row": 0}')
    p.stdout.close()  # like `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
