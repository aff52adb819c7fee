"""The decode stage for text items: bytes in, checked ``str`` out, one error per bad item.

Input columns (from ``engine.prelabel.plan.plan_items``): ``item_id``, ``uri``
and ``text`` (the stored text as UTF-8 bytes). An item whose stored text is
empty but which has a ``uri`` is read from that file, confined to the data
roots like an image. Output columns: ``item_id``, ``text`` (``str``; "" on
error), ``error`` ("" when fine). Refused with a message, never raised:

- bytes that are not valid UTF-8 (the offending byte and its offset named);
- empty or whitespace-only text ("nothing to tag");
- text longer than ``max_text_chars`` characters (the tagger windows long
  texts itself; this bound is the job's guard against absurd inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.prelabel.codec import Batch, objects
from engine.prelabel.runner import describe_error


class TextDecodeError(ValueError):
    """A text item that cannot be tagged."""


def decode_text(
    item_id: str,
    data: bytes,
    uri: str,
    roots: Sequence[Path],
    *,
    max_text_chars: int,
    max_file_bytes: int,
) -> str:
    """One item's text; raises ``TextDecodeError`` (or a file error) on any problem."""
    source = "text"
    if not data and uri:
        from engine.paths import read_confined

        data = read_confined(uri, roots, max_bytes=max_file_bytes)
        source = uri
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextDecodeError(
            f"item {item_id!r}: {source} is not valid UTF-8: byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start} ({exc.reason})"
        ) from None
    if not text.strip():
        raise TextDecodeError(f"item {item_id!r} has empty text; nothing to tag")
    if len(text) > max_text_chars:
        raise TextDecodeError(
            f"item {item_id!r} has {len(text)} characters, over max_text_chars="
            f"{max_text_chars}; split the text or raise max_text_chars in the job config"
        )
    return text


def decode_text_batch(
    batch: Batch,
    *,
    roots: Sequence[str],
    max_text_chars: int,
    max_file_bytes: int,
) -> Batch:
    """Decode each row's text; a failure becomes that row's ``error``."""
    root_paths = [Path(r) for r in roots]
    texts: list[str] = []
    errors: list[str] = []
    for item_id, data, uri in zip(batch["item_id"], batch["text"], batch["uri"], strict=True):
        try:
            text = decode_text(
                str(item_id),
                bytes(data) if data is not None else b"",
                str(uri or ""),
                root_paths,
                max_text_chars=max_text_chars,
                max_file_bytes=max_file_bytes,
            )
        except Exception as exc:  # one bad item must not stop the job
            texts.append("")
            errors.append(describe_error(exc))
        else:
            texts.append(text)
            errors.append("")
    return {"item_id": batch["item_id"], "text": objects(texts), "error": objects(errors)}
