"""The few bytes of protobuf framing the session stream writes by hand (both ends).

A repeated message field's item is its tag, its length as a varint and its bytes; so is a
message field. Building ``SessionRequest``/``SessionResponse`` bytes this way puts a request,
a reply or an event (serialized once) inside without copying it into a new message object.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_key(number: int) -> bytes:
    """The tag of length-delimited field ``number``."""
    return varint(number << 3 | 2)


def message_type(f: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    assert f.message_type is not None
    return f.message_type
