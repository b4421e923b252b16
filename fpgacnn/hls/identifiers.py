"""Turning untrusted names (layers, classes, projects) into safe C++/Tcl/file identifiers.

Names come from users' model files. Anything that reaches generated C++, Tcl, a Makefile
or a path goes through here first, so a name with quotes, ``$(...)``, newlines or ``../``
can never change the meaning of a generated file or escape the project directory.
"""
from __future__ import annotations

import hashlib
import re

# C++ and Tcl keywords we must never emit as a bare identifier, plus names hls4ml uses.
_RESERVED = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast
    continue co_await co_return co_yield decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires return short signed sizeof static static_assert
    static_cast struct switch template this thread_local throw true try typedef typeid
    typename union unsigned using virtual void volatile wchar_t while xor xor_eq
    main nnet std hls ap_fixed ap_int ap_uint proc set puts exec eval source open file
    """.split()
)
_MAX_LEN = 48


def safe_identifier(name: str, used: set[str] | None = None, prefix: str = "n") -> str:
    """A valid, readable C/C++/Tcl identifier derived from ``name``.

    Only ``[A-Za-z0-9_]`` survive; the result never starts with a digit or an underscore
    (leading underscores are reserved in C++), is not a keyword, and is at most 48
    characters. When ``used`` is given, the result is made unique against it and added.
    A short hash of the original keeps distinct hostile names distinct.
    """
    raw = str(name)
    ident = re.sub(r"[^A-Za-z0-9_]+", "_", raw.encode("ascii", "ignore").decode()).strip("_")
    ident = re.sub(r"_+", "_", ident)
    changed = ident != raw
    if not ident or not ident[0].isalpha():
        ident = f"{prefix}_{ident}" if ident else prefix
    if ident.lower() in _RESERVED:
        ident = f"{prefix}_{ident}"
    if len(ident) > _MAX_LEN or (changed and len(raw) > _MAX_LEN):
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        ident = f"{ident[:_MAX_LEN - 9]}_{digest}"
    if used is not None:
        base, k = ident, 1
        while ident in used:
            k += 1
            ident = f"{base}_{k}"
        used.add(ident)
    return ident


def safe_text(text: str, max_len: int = 200) -> str:
    """Printable one-line text for comments and READMEs: no newlines, no comment closers."""
    out = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    out = out.replace("*/", "*_/").replace("/*", "/_*")
    return out[:max_len]
