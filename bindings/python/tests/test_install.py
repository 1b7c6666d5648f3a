"""`pip install ./bindings/python` works with Debian's packages alone (no
index, no build isolation), and the installed package finds libnnmod."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, ".."))


def _have(mod):
    return subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True).returncode == 0


@pytest.mark.skipif(not (_have("pip") and _have("setuptools") and _have("venv")
                         and _have("ensurepip")),
                    reason="needs python3-pip, python3-setuptools and python3-venv")
def test_pip_install_into_a_venv(tmp_path):
    src = tmp_path / "src"
    # a copy, so that the in-tree build leaves nothing in the checkout
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                                           "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    code = ("import nnmod, numpy as np; m = nnmod.from_manifest(%r); "
            "print(nnmod.__file__); print(m(np.ones((1, 4), np.float32)).shape)"
            % os.path.join(SRC, "..", "..", "examples", "manifests", "mlp.json"))
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    where, shape = r.stdout.split("\n")[:2]
    assert where.startswith(str(venv))
    assert shape == "(1, 3)"


def test_missing_library_is_a_clear_import_error(tmp_path):
    env = dict(os.environ, NNMOD_LIBRARY=str(tmp_path / "no" / "libnnmod.so"),
               PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-c", "import nnmod"], capture_output=True, text=True,
                       env=env)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "NNMOD_LIBRARY" in r.stderr


@pytest.mark.skipif(not os.environ.get("NNM_TEST_PKG_CONFIG_PATH") or not shutil.which("pkg-config"),
                    reason="no build-tree nnmod.pc given (ctest sets NNM_TEST_PKG_CONFIG_PATH)")
def test_found_through_pkg_config(tmp_path):
    env = dict(os.environ, PKG_CONFIG_PATH=os.environ["NNM_TEST_PKG_CONFIG_PATH"],
               PYTHONPATH=SRC)
    env.pop("NNMOD_LIBRARY", None)
    r = subprocess.run([sys.executable, "-c", "import nnmod; print(nnmod.library_path)"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "nnmod"], capture_output=True,
                            text=True, env=env).stdout.strip()
    assert r.stdout.strip() == os.path.join(libdir, "libnnmod.so")
