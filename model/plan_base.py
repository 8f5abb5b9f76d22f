"""The plan's building blocks, shared by model/plan.py and the blocks kept in their own modules
(model/dataplane.py): strict models, durations, and the context keys of a refusal."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A refusal raised on a whole model that belongs to one of its fields: the context's "at" is that
# field's path below the model and "fix" the fix (model.loading reports both).
AT, FIX = "at", "fix"
MAX_DURATION = 365 * 86400  # a year: anything longer is a typo, and timedelta arithmetic stays in range


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_duration(value: object) -> int:
    """'10m', '90s', '1h30m' or a number of seconds -> seconds (int > 0)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m or 1h30m")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m or 1h30m")
        seconds = int(value)
    else:
        m = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*", str(value))
        if not m or not any(m.groups()):
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m or 1h30m")
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


DurationField = Annotated[int, Field(ge=1, le=MAX_DURATION)]
