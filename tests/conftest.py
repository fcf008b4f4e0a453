"""Every test runs offline, in a temporary Hugging Face home, on micro model sizes."""

import os
import tempfile

# Set before transformers / huggingface_hub / datasets are imported anywhere: they read these at import time.
_HF_HOME = tempfile.mkdtemp(prefix="pros_hf_test_hf_home_")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch.compile's compiled kernels go to a cache of this run: a shared /tmp/torchinductor_<user> written by another
# process at the same time can hand a half-written kernel to a test ("file too short")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_HF_HOME, "torchinductor"))

import pytest  # noqa: E402


def free_port() -> int:
    """A port nobody listens on now: a fixed one can still be held by a previous run's socket."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def hf_home():
    """The temporary HF_HOME of this test run (its hub cache is `<hf_home>/hub`)."""
    return _HF_HOME


def install_in_hub_cache(folder, repo_id: str) -> str:
    """Lay `folder` out as the offline Hub cache entry of `repo_id` (models--org--name/snapshots/<hash> + refs/main),
    so that `from_pretrained(repo_id)` resolves it exactly as it would a downloaded repository."""
    import hashlib
    import shutil
    from pathlib import Path

    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    repo_dir = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return str(snapshot)


# Python source that makes `import pros_hf` fail in the process that runs it, as for a Hub user without the package.
BLOCK_PROS_HF = r"""
import importlib.abc, sys
class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pros_hf" or name.startswith("pros_hf."):
            raise ImportError("pros_hf is blocked in this process")
sys.meta_path.insert(0, BlockPackage())
try:
    import pros_hf  # noqa: F401
    raise SystemExit("pros_hf was importable")
except ImportError:
    pass
"""


def run_without_pros_hf(script: str, *args, cwd, timeout: int = 300):
    """Run `script` in a fresh Python where `pros_hf` cannot be imported (with this run's offline HF_HOME and
    a private HF_MODULES_CACHE under `cwd`), so that models load only through `trust_remote_code=True`. Fails the
    test with the child's stderr if it exits non-zero; returns the `subprocess.CompletedProcess`."""
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["HF_MODULES_CACHE"] = os.path.join(str(cwd), "modules")
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_PROS_HF + script, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
