"""Text in the cells of the ``PROVENANCE`` table: ASCII, percent-encoded."""

from __future__ import annotations

from urllib.parse import quote, unquote

_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a file name that is not UTF-8 gets its own bytes back.

    :func:`os.fsdecode` turns each byte of a name that is not valid UTF-8 into
    a lone surrogate ("surrogateescape"); encoding reverses that, so that the
    table holds the name's bytes (percent-encoded) and reading it back gives
    the name again.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates: kept visible, escaped
        return text.encode("utf-8", "backslashreplace")


def _printable(text) -> str:
    """``text`` with the bytes of a name that is not UTF-8 written ``\\xff``.

    For text shown to people (messages, HTML, HISTORY): a lone surrogate
    cannot be printed or written as UTF-8.

    Examples
    --------
    >>> import os
    >>> _printable(os.fsdecode(b"bias_\\xff.fits"))
    'bias_\\\\xff.fits'
    """
    text = str(text)
    return _utf8(text).decode("utf-8", "backslashreplace")


def _encode_text(text: str) -> str:
    """FITS table strings are ASCII: percent-encode anything else (and '%')."""
    return _keep_trailing_spaces(quote(_utf8(str(text)), safe=_SAFE))


def _pieces(text: str, size: int) -> list[str]:
    """Cut encoded text into cells of at most ``size`` characters.

    A cut never leaves a trailing space (FITS drops it); a run of spaces
    longer than a cell is written ``%20``.
    """
    pieces = []
    i = 0
    while i < len(text):
        piece = text[i:i + size]
        stripped = piece.rstrip(" ")
        piece = stripped if stripped else text[i:i + max(1, size // 3)]
        pieces.append(piece)
        i += len(piece)
    return [_keep_trailing_spaces(p) for p in pieces] or [""]


def _keep_trailing_spaces(text: str) -> str:
    # FITS readers drop trailing spaces of a string cell: encode them.
    stripped = text.rstrip(" ")
    return stripped + "%20" * (len(text) - len(stripped))


def _decode_text(text) -> str:
    if hasattr(text, "tolist") and not isinstance(text, (str, bytes)):
        # A variable-length column comes back as an array of characters.
        text = "".join(c.decode("ascii", "replace") if isinstance(c, bytes) else str(c)
                       for c in text.tolist())
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    return unquote(str(text).rstrip(), errors="surrogateescape")
