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

import pytest  # noqa: E402


@pytest.fixture
def hf_home():
    """The temporary HF_HOME of this test session (its hub cache is `<hf_home>/hub`)."""
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
