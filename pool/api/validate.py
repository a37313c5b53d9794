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

#: a field's check: None when the value is fine, else (where under the field, what is wrong);
#: the location is built only for a value that fails (this runs on every call)
Check = Callable[[Any], "tuple[str, str] | None"]
_CHECKERS: dict[str, Check] = {}


def check_request(request: Message) -> None:
    """Raise InvalidArgument naming the first field the wire allows but this API does not."""
    desc = request.DESCRIPTOR
    checker = _CHECKERS.get(desc.full_name) or _checker(desc)  # type: ignore[arg-type]
    problem = checker(request)
    if problem is not None:
        where, what = problem
        raise InvalidArgument(f"{where.lstrip('.') or 'request'} {what}")


def _checker(desc: Descriptor) -> Check:
    checker: Check
    if desc.full_name == TIMESTAMP:
        checker = _check_timestamp
    else:
        # (field, its check, repeated, a singular message: checked only when set)
        plan = [
            (f.name, check, f.is_repeated, not f.is_repeated and f.message_type is not None)
            for f in desc.fields
            if (check := _field_check(desc, f)) is not None
        ]

        def check_fields(msg: Any) -> tuple[str, str] | None:
            for name, check, repeated, optional in plan:
                value = getattr(msg, name)
                if repeated:
                    for i, item in enumerate(value):
                        problem = check(item)
                        if problem is not None:
                            return f".{name}[{i}]{problem[0]}", problem[1]
                elif not optional or msg.HasField(name):
                    problem = check(value)
                    if problem is not None:
                        return f".{name}{problem[0]}", problem[1]
            return None

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

    def check(value: str) -> tuple[str, str] | None:
        if value.isprintable():  # C speed, and true for almost every value
            return None
        found = search(value)  # the exact answer (a tab, or U+00A0, is not "printable")
        if found is None:
            return None
        return "", (
            f"holds the control character U+{ord(found.group()):04X} at position "
            f"{found.start()}: text fields take printable characters only"
        )

    return check


def _enum_check(name: str, known: frozenset[int]) -> Check:
    def check(value: int) -> tuple[str, str] | None:
        if value in known:
            return None
        return "", (
            f"is {value}, not a value of {name}: expected one of "
            f"{', '.join(str(v) for v in sorted(known))}"
        )

    return check


def _message_check(desc: Descriptor) -> Check:
    def check(value: Message) -> tuple[str, str] | None:
        return (_CHECKERS.get(desc.full_name) or _checker(desc))(value)

    return check


def _check_timestamp(stamp: Any) -> tuple[str, str] | None:
    seconds, nanos = stamp.seconds, stamp.nanos
    if TS_MIN <= seconds <= TS_MAX and 0 <= nanos <= 999_999_999:
        return None
    return "", (
        f"(seconds={seconds}, nanos={nanos}) is outside the Timestamp range: "
        "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos 0..999999999"
    )
