"""Damage done to files by a crash, a bad disk or a careless edit, as hypothesis strategies:
truncation, bit flips and random spans, applied to a valid file's bytes."""

from __future__ import annotations

import json

from hypothesis import strategies as st


@st.composite
def damaged(
    draw: st.DrawFn, original: bytes, positions: st.SearchStrategy[int] | None = None
) -> bytes:
    """``original`` truncated, with up to 8 bits flipped, or with a span of up to 64 bytes
    replaced by random ones, at ``positions`` (default: anywhere in the file; a reader's tests
    aim at the bytes that hold its structure)."""
    where = positions if positions is not None else st.integers(0, len(original) - 1)
    kind = draw(st.sampled_from(("truncate", "flip", "replace")))
    if kind == "truncate":
        return original[: draw(where)]
    data = bytearray(original)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(where)] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    at = draw(where)
    data[at : at + draw(st.integers(0, 64))] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def in_regions(regions: tuple[tuple[int, int], ...]) -> st.SearchStrategy[int]:
    """Positions inside one of the ``[start, end)`` byte ranges."""
    return st.sampled_from(regions).flatmap(lambda r: st.integers(r[0], r[1] - 1))


def _slots(obj: object) -> list[tuple[object, object]]:
    """Every (container, key) of a parsed JSON document, depth first."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    )
    found: list[tuple[object, object]] = []
    for key, value in items:
        found.append((obj, key))
        found += _slots(value)
    return found


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def json_damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """Valid JSON (or JSON lines) with one value replaced by one of another type or range, or one
    key removed: what a careless edit or another tool's writer leaves."""
    lines = (
        original.decode().splitlines()
        if original.strip().startswith(b'{"') and b"\n{" in original
        else None
    )
    docs = [json.loads(x) for x in lines] if lines else [json.loads(original)]
    doc = draw(st.sampled_from(docs))
    slots = _slots(doc)
    if slots:
        container, key = draw(st.sampled_from(slots))
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(JSON_VALUES)  # type: ignore[index]
    text = "\n".join(json.dumps(d) for d in docs) + "\n" if lines else json.dumps(doc)
    return text.encode()
