"""Hypothesis strategies for hostile protobuf bodies: plausible wire format, then broken.

The structured bodies are built from a ``random.Random`` that Hypothesis seeds
(and, with derandomize=True, seeds the same way on every run). Drawing each
byte decision through Hypothesis cost ~6 ms a body; this costs ~0.1 ms, which
is what lets a few thousand bodies per method fit in the time budget.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from tests.security.corpus import SEEDS, tag
from tests.support.protowire import varint

SEED_BODIES = [body[:2048] for body in SEEDS.values()]  # long seeds run whole in the corpus test
EDGE_VALUES = [0, 1, 2, 20, 21, 127, 128, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


def _varint(rnd: random.Random) -> bytes:
    """A varint that may be overlong, wider than 64 bits, or cut short."""
    if rnd.random() < 0.4:
        value = rnd.choice(EDGE_VALUES)
    else:
        value = rnd.getrandbits(rnd.choice([7, 14, 32, 63, 64, 70]))
    encoded = varint(value)
    style = rnd.random()
    if style < 0.1:
        return bytes(b | 0x80 for b in encoded) + b"\x80" * rnd.randint(0, 4) + b"\x00"
    if style < 0.2:
        return bytes(b | 0x80 for b in encoded)  # truncated: the last byte says "more follows"
    return encoded


def _field(rnd: random.Random) -> bytes:
    """One field: any number, any of the eight wire types, a body that may lie about itself."""
    number = rnd.choice([1, 1, 2, 2, 3, rnd.randint(0, 40), rnd.randint(0, 2**29 - 1)])
    wire_type = rnd.choice([0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7])
    if wire_type == 0:
        body = _varint(rnd)
    elif wire_type in (1, 5):
        width = 8 if wire_type == 1 else 4
        body = rnd.randbytes(width if rnd.random() < 0.8 else rnd.randint(0, width - 1))
    elif wire_type == 2:
        content = rnd.choice(
            [rnd.randbytes(rnd.randint(0, 40)), b"MathHelper", "\u00e9t\u00e9".encode()]
        )
        declared = rnd.choice(
            [len(content), len(content), rnd.randint(0, 100), rnd.randint(2**31 - 1, 2**64 - 1)]
        )
        body = varint(declared) + content
    else:  # 3 and 4 start and end a group; 6 and 7 do not exist
        body = rnd.randbytes(rnd.randint(0, 3))
    return tag(number, wire_type) + body


def _message(rnd: random.Random) -> bytes:
    return b"".join(_field(rnd) for _ in range(rnd.randint(0, 8)))


def _mutated(rnd: random.Random, base: bytes) -> bytes:
    """Truncated, bit-flipped, spliced, repeated or left alone."""
    action = rnd.randrange(5)
    if action == 0 and base:
        return base[: rnd.randrange(len(base))]
    if action == 1 and base:
        at = rnd.randrange(len(base))
        return base[:at] + bytes([base[at] ^ (1 << rnd.randrange(8))]) + base[at + 1 :]
    if action == 2:
        return base + _message(rnd)
    if action == 3:
        return base * rnd.randint(2, 20)
    return base


def _long(rnd: random.Random) -> bytes:
    """8 to 80 KiB of one repeated unit, cut to length; some pass the 64 KiB receive limit."""
    unit = _field(rnd)[:16] or b"\x08\x01"
    size = rnd.randint(8 * 1024, 80 * 1024)
    return (unit * (size // len(unit) + 1))[:size]


def build(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.35:
        return _message(rnd)
    if kind < 0.6:
        return _mutated(rnd, rnd.choice(SEED_BODIES))
    if kind < 0.95:
        return _mutated(rnd, _message(rnd))
    return _long(rnd)


payloads = st.one_of(
    st.binary(max_size=64),  # Hypothesis's own byte strings, shrinkable
    st.randoms(use_true_random=True).map(build),
    st.randoms(use_true_random=True).map(build),
    st.randoms(use_true_random=True).map(build),
)
