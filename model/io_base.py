"""The base of every activity and workflow message (model/io.py, model/io_dataplane.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Msg(BaseModel):
    """Extra fields are ignored: a newer sender's additions do not break an older reader."""

    model_config = ConfigDict(extra="ignore")
