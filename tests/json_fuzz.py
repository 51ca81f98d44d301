"""Hypothesis helpers for fuzzing JSON documents (glTF, SOG meta.json): put arbitrary JSON
values at arbitrary places, so readers meet every wrong type, not only broken bytes."""

from __future__ import annotations

from hypothesis import strategies as st

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                        st.floats(allow_nan=True), st.text(max_size=8),
                        st.lists(st.integers(-3, 20), max_size=4),
                        st.dictionaries(st.text(max_size=6), st.integers(-2, 5), max_size=3))


def json_paths(value, path=()):
    """Every path (tuple of keys/indices) into a parsed JSON value, the root first."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from json_paths(item, path + (i,))


def mutate_json(doc, data, *, most: int = 3) -> None:
    """Replace 1..``most`` values of ``doc`` in place with values drawn from JSON_VALUES."""
    paths = [p for p in json_paths(doc) if p]
    for _ in range(data.draw(st.integers(1, most))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
