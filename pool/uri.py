"""SIP URIs of users: ``sip:user@domain``, compared case-insensitively.

Patterns match the whole text (``fullmatch``): ``$`` would also accept a trailing newline.
"""

from __future__ import annotations

import re

from pool.errors import InvalidArgument

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
_DOMAIN_PATTERN = rf"{_LABEL}(?:\.{_LABEL})*"
_URI = re.compile(rf"sip:[A-Za-z0-9._+\-']{{1,64}}@{_DOMAIN_PATTERN}", re.ASCII)
_DOMAIN = re.compile(_DOMAIN_PATTERN, re.ASCII)
_PREFIX = re.compile(r"[A-Za-z0-9._+\-']{1,48}", re.ASCII)


def parse_uri(uri: str, *, field: str = "user_uri") -> str:
    """Return the canonical (lower-case) form of a user's SIP URI, or raise InvalidArgument."""
    if not uri:
        raise InvalidArgument(f"{field} is empty: expected a SIP URI like sip:alice@contoso.com")
    if len(uri) > 256 or _URI.fullmatch(uri) is None:
        shown = uri if len(uri) <= 80 else uri[:77] + "..."
        raise InvalidArgument(
            f"{field} {shown!r} is not a SIP URI: expected sip:user@domain, "
            "e.g. sip:alice@contoso.com"
        )
    return uri.lower()


def domain_of(uri: str) -> str:
    return uri.rpartition("@")[2]


def check_domain(domain: str) -> str:
    if not domain or len(domain) > 253 or _DOMAIN.fullmatch(domain) is None:
        raise InvalidArgument(f"domain {domain!r} is not a DNS domain name like contoso.com")
    return domain.lower()


def check_prefix(prefix: str) -> str:
    if _PREFIX.fullmatch(prefix) is None:
        raise InvalidArgument(
            f"prefix {prefix!r} is not usable in a SIP URI: 1 to 48 of letters, digits, . _ + - '"
        )
    return prefix
