"""Stripe's API versions: the ones a `Stripe-Version` header may name, and the account default.

The account's default version (a sandbox setting, `--api-version`) answers requests that name
none, and is the version events are rendered in, whatever version the request that caused them
asked for. The default is the version the stripe package pinned in pyproject speaks.

A client newer than the sandbox is not refused: a well-formed version (`YYYY-MM-DD` or
`YYYY-MM-DD.name`, beta flags after it as usual) dated after the newest one in `API_VERSIONS`
and no later than today (UTC) is answered in the newest shapes the sandbox knows (`rendered_as`).
The answer says so: its `Stripe-Version` header names the version the body is really in
(`2026-10-28.endive`), a `Sandbox-Rendered-As` header with the same value is added only to such
substituted answers, and the sandbox logs one warning per distinct newer version. A webhook
endpoint created with such an `api_version` keeps it, and receives its events rendered in (and
labelled with) the newest known version. Malformed versions, dates in the future, and dates up to
the newest known that never were versions (`2026-10-01`) get Stripe's 400.
"""

from __future__ import annotations

import bisect
import re
from datetime import UTC, date, datetime

from app.sandbox.errors import InvalidRequestError

DEFAULT_API_VERSION = "2026-10-28.endive"
# The version that moved the shapes of DESIGN.md's table (render.py draws both sides).
BASIL = "2025-03-31.basil"
# The version from which `charge.refunds` is sent only when expanded.
REFUNDS_INCLUDABLE = "2022-11-15"

# Every API version Stripe has published (as listed by its SDK's webhook-endpoint parameters,
# from the OpenAPI spec), oldest first; a `Stripe-Version` outside this list gets Stripe's 400,
# unless it is newer than all of them (`is_accepted`).
API_VERSIONS: tuple[str, ...] = tuple(
    """
    2011-01-01 2011-06-21 2011-06-28 2011-08-01 2011-09-15 2011-11-17 2012-02-23 2012-03-25
    2012-06-18 2012-06-28 2012-07-09 2012-09-24 2012-10-26 2012-11-07 2013-02-11 2013-02-13
    2013-07-05 2013-08-12 2013-08-13 2013-10-29 2013-12-03 2014-01-31 2014-03-13 2014-03-28
    2014-05-19 2014-06-13 2014-06-17 2014-07-22 2014-07-26 2014-08-04 2014-08-20 2014-09-08
    2014-10-07 2014-11-05 2014-11-20 2014-12-08 2014-12-17 2014-12-22 2015-01-11 2015-01-26
    2015-02-10 2015-02-16 2015-02-18 2015-03-24 2015-04-07 2015-06-15 2015-07-07 2015-07-13
    2015-07-28 2015-08-07 2015-08-19 2015-09-03 2015-09-08 2015-09-23 2015-10-01 2015-10-12
    2015-10-16 2016-02-03 2016-02-19 2016-02-22 2016-02-23 2016-02-29 2016-03-07 2016-06-15
    2016-07-06 2016-10-19 2017-01-27 2017-02-14 2017-04-06 2017-05-25 2017-06-05 2017-08-15
    2017-12-14 2018-01-23 2018-02-05 2018-02-06 2018-02-28 2018-05-21 2018-07-27 2018-08-23
    2018-09-06 2018-09-24 2018-10-31 2018-11-08 2019-02-11 2019-02-19 2019-03-14 2019-05-16
    2019-08-14 2019-09-09 2019-10-08 2019-10-17 2019-11-05 2019-12-03 2020-03-02 2020-08-27
    2022-08-01 2022-11-15 2023-08-16 2023-10-16 2024-04-10 2024-06-20
    2024-09-30.acacia 2024-10-28.acacia 2024-11-20.acacia 2024-12-18.acacia 2025-01-27.acacia
    2025-02-24.acacia 2025-03-01.dashboard
    2025-03-31.basil 2025-04-30.basil 2025-05-28.basil 2025-06-30.basil 2025-07-30.basil
    2025-08-27.basil 2025-09-30.clover 2025-10-29.clover 2025-11-17.clover 2025-12-15.clover
    2026-01-28.clover 2026-02-25.clover 2026-03-25.dahlia 2026-04-22.dahlia 2026-05-27.dahlia
    2026-06-24.dahlia 2026-07-29.dahlia 2026-08-26.dahlia 2026-09-30.endive 2026-10-28.endive
    """.split()
)
_KNOWN_VERSIONS = frozenset(API_VERSIONS)
_POSITION = {version: index for index, version in enumerate(API_VERSIONS)}
# One version a day at most: the dates alone order the versions.
_DATES = [version[:10] for version in API_VERSIONS]
NEWEST_API_VERSION = API_VERSIONS[-1]
# Release names are short lowercase words (acacia, basil, …).
_WELL_FORMED = re.compile(r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:\.[a-z]{1,30})?")
# Preview features ride after the version: `2025-01-27.acacia; some_beta=v1`.
_BETAS = re.compile(r"(?:\s*;\s*[A-Za-z0-9_]+=v[0-9]+)*\s*")


def is_accepted(version: str, today: date | None = None) -> bool:
    """Whether `version` is one Stripe has published, or a well-formed one newer than the newest
    the sandbox knows and dated no later than `today` (the real date, UTC, by default)."""
    if version in _KNOWN_VERSIONS:
        return True
    well_formed = _WELL_FORMED.fullmatch(version)
    if well_formed is None:
        return False
    try:
        day = date.fromisoformat(well_formed["date"])
    except ValueError:  # 2024-02-30
        return False
    newest = date.fromisoformat(_DATES[-1])
    return newest < day <= (today or datetime.now(UTC).date())


def rendered_as(version: str) -> str:
    """The published version whose shapes answer `version`: itself when Stripe published it,
    else the latest published before it (for a version newer than the sandbox, its newest)."""
    if version in _KNOWN_VERSIONS:
        return version
    return API_VERSIONS[max(bisect.bisect_right(_DATES, version[:10]) - 1, 0)]


def before_basil(version: str) -> bool:
    """Whether `version` sends the shapes basil moved (DESIGN.md, "Shapes that moved")."""
    return _POSITION[rendered_as(version)] < _POSITION[BASIL]


def embeds_charge_refunds(version: str) -> bool:
    """Whether `version` embeds `charge.refunds` without being asked (before 2022-11-15)."""
    return _POSITION[rendered_as(version)] < _POSITION[REFUNDS_INCLUDABLE]


def api_version_of(header: str | None, default: str = DEFAULT_API_VERSION) -> str:
    """The version a `Stripe-Version` header asks for (`default` when absent), or Stripe's 400;
    a version newer than the sandbox is returned as asked (see `rendered_as`)."""
    if not header:
        return default
    version, semicolon, betas = header.partition(";")
    version = version.strip()
    if not is_accepted(version) or not _BETAS.fullmatch(semicolon + betas):
        shown = header if len(header) <= 80 else header[:80] + "…"
        raise InvalidRequestError(f"Invalid Stripe API version: {shown}")
    return version
