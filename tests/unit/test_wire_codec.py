"""The server-to-event-host wire format gives back exactly the row the event would have."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oriserver.domain.events import FailureCode, Inputs, Method
from oriserver.store.rows import row_from_wire, to_row, to_wire
from tests.strategies import INT64_MAX, INT64_MIN
from tests.support.events import calculation

int64s = st.integers(INT64_MIN, INT64_MAX)


@given(
    method=st.sampled_from(Method),
    inputs=st.builds(Inputs, first=int64s, last=int64s) | st.builds(Inputs, base=int64s),
    result=int64s,
    client_ip=st.none() | st.sampled_from(["127.0.0.1", "::1", "10.0.0.7"]),
    trace_id=st.none() | st.text(max_size=32),
    failure=st.none() | st.tuples(st.sampled_from(FailureCode), st.text(max_size=80)),
)
def test_a_row_survives_the_wire(
    *,
    method: Method,
    inputs: Inputs,
    result: int,
    client_ip: str | None,
    trace_id: str | None,
    failure: tuple[FailureCode, str] | None,
) -> None:
    events = calculation(
        method, inputs=inputs, result=result, client_ip=client_ip, trace_id=trace_id,
        failure=failure,
    )  # fmt: skip
    for event in events:
        assert row_from_wire(to_wire(event)) == to_row(event)
