"""``load_json``'s guards give the same answers on their fast paths."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.json_input import MAX_INTEGER_DIGITS, JsonInputError, load_json, nesting_exceeds

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@given(values, st.integers(min_value=0, max_value=8))
def test_nesting_exceeds_is_depth_above_the_limit(value: Any, limit: int) -> None:
    assert nesting_exceeds(value, limit) == (depth(value) > limit)


@given(values)
def test_load_json_reads_what_json_reads(value: Any) -> None:
    body = json.dumps(value).encode()
    assert load_json(body, max_depth=100) == json.loads(body)


@pytest.mark.parametrize(
    ("digits", "accepted"),
    [(MAX_INTEGER_DIGITS, True), (MAX_INTEGER_DIGITS + 1, False)],
    ids=["longest", "too-long"],
)
def test_integer_length_guard(digits: int, accepted: bool) -> None:
    body = b'[{"id": "' + b"7" * 200 + b'", "n": -' + b"9" * digits + b"}]"  # long text is fine
    if accepted:
        assert load_json(body)[0]["n"] == -int("9" * digits)
    else:
        with pytest.raises(JsonInputError, match=f"integer of {digits} digits"):
            load_json(body)
