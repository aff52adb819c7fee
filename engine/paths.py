"""Confine file access to configured data roots.

Every path that comes from a user (CLI argument, manifest row, stored item
uri) goes through ``confine`` before it is opened: ``..`` segments and
symlinks are resolved first, and a result outside every root is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class PathNotAllowedError(PermissionError):
    """A path resolves outside every configured data root."""


def confine(path: str | Path, roots: Sequence[Path], *, base: Path | None = None) -> Path:
    """Resolve ``path`` (relative to ``base`` if given) and require it inside a root.

    Symlinks are followed before the check, so a link inside a root that
    points out of it is refused too.
    """
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = (base or Path.cwd()) / candidate
    resolved = candidate.resolve()
    for root in roots:
        root_resolved = root.expanduser().resolve()
        if resolved == root_resolved or resolved.is_relative_to(root_resolved):
            return resolved
    allowed = ", ".join(str(r) for r in roots) or "(none configured)"
    raise PathNotAllowedError(
        f"{path} resolves to {resolved}, outside the data roots ({allowed}); "
        "add its folder to LABELENGINE_DATA_ROOTS to allow it"
    )


def read_confined(uri: str, roots: Sequence[Path], *, max_bytes: int) -> bytes:
    """Read a local file under a data root, refusing anything over ``max_bytes``."""
    path = confine(uri.removeprefix("file://"), roots)
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{uri}: file is {size} bytes, over the {max_bytes}-byte limit")
    return path.read_bytes()
