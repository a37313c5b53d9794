"""What every request must satisfy before a handler sees it, checked from its descriptor.

The domain checks what a field means (a URI, an availability number, a limit); this checks
what the wire allows but no field of this API does, for every field of every request, so a
new field is covered without editing anything here:

* text: no control characters (C0, DEL, C1). Message bodies and notes may hold tab, line feed
  and carriage return (``MULTILINE``);
* enums: only the numbers the proto defines (proto3 keeps unknown numbers as they came);
* ``google.protobuf.Timestamp``: inside its documented range (years 1 to 9999, nanos
  0..999,999,999);
* nested messages and repeated fields, item by item.

The checker of each message type is built once, from its descriptor, and cached; a nested
message's checker is looked up when it is first needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from pool.errors import InvalidArgument

#: C0 controls, DEL and C1 controls
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the same, less tab, line feed and carriage return
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: (message full name, field name) of text that may span lines
MULTILINE = frozenset(
    {
        ("poolsim.v1.Message", "body"),
        ("poolsim.v1.SendMessageRequest", "body"),
        ("poolsim.v1.PublishPresenceRequest", "note"),
    }
)
TIMESTAMP = "google.protobuf.Timestamp"
TS_MIN = -62_135_596_800  # 0001-01-01T00:00:00Z
TS_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z

Check = Callable[[Any, str], None]
_CHECKERS: dict[str, Callable[[Message, str], None]] = {}


def check_request(request: Message) -> None:
    """Raise InvalidArgument naming the first field the wire allows but this API does not."""
    checker = _CHECKERS.get(request.DESCRIPTOR.full_name)
    if checker is None:
        checker = _checker(request.DESCRIPTOR)  # type: ignore[arg-type]  # upb descriptor
    checker(request, "")


def _checker(desc: Descriptor) -> Callable[[Message, str], None]:
    checker: Callable[[Message, str], None]
    if desc.full_name == TIMESTAMP:
        checker = _check_timestamp
    else:
        # (field, check, repeated, singular message: checked only when set)
        checks = [
            (
                f.name,
                check,
                f.is_repeated,
                not f.is_repeated and f.message_type is not None,
            )
            for f in desc.fields
            if (check := _field_check(desc, f)) is not None
        ]

        def check_fields(msg: Message, path: str) -> None:
            for name, check, repeated, optional in checks:
                value = getattr(msg, name)
                if repeated:
                    for i, item in enumerate(value):
                        check(item, f"{path}{name}[{i}]")
                elif not optional or msg.HasField(name):
                    check(value, path + name)

        checker = check_fields
    _CHECKERS[desc.full_name] = checker
    return checker


def _field_check(desc: Descriptor, f: FieldDescriptor) -> Check | None:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        return None  # no request has a map; a reply's maps are built by the server
    if f.type == FieldDescriptor.TYPE_STRING:
        pattern = _CONTROL_MULTILINE if (desc.full_name, f.name) in MULTILINE else _CONTROL
        return _text_check(pattern)
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        return _enum_check(f.enum_type.name, frozenset(f.enum_type.values_by_number))
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        assert f.message_type is not None
        return _message_check(f.message_type)
    return None  # integers and bools: the domain checks each against what it means


def _text_check(pattern: re.Pattern[str]) -> Check:
    search = pattern.search

    def check(value: str, where: str) -> None:
        found = search(value)
        if found is not None:
            raise InvalidArgument(
                f"{where} holds the control character U+{ord(found.group()):04X} at "
                f"position {found.start()}: text fields take printable characters only"
            )

    return check


def _enum_check(name: str, known: frozenset[int]) -> Check:
    def check(value: int, where: str) -> None:
        if value not in known:
            raise InvalidArgument(
                f"{where}={value} is not a value of {name}: expected one of "
                f"{', '.join(str(v) for v in sorted(known))}"
            )

    return check


def _message_check(desc: Descriptor) -> Check:
    def check(value: Message, where: str) -> None:
        checker = _CHECKERS.get(desc.full_name)
        if checker is None:
            checker = _checker(desc)
        checker(value, where + ".")

    return check


def _check_timestamp(stamp: Message, path: str) -> None:
    where = path.rstrip(".") or "timestamp"
    seconds, nanos = stamp.seconds, stamp.nanos  # type: ignore[attr-defined]
    if not TS_MIN <= seconds <= TS_MAX or not 0 <= nanos <= 999_999_999:
        raise InvalidArgument(
            f"{where} (seconds={seconds}, nanos={nanos}) is outside the Timestamp range: "
            "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos 0..999999999"
        )
