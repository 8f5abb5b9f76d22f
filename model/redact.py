"""One redaction filter for everything that leaves an activity: tool output, error messages, log fields.

Why one filter: tool output is kept in three places — the workflow history (activity results and
failure details: the 40-60 line tails of mariadb, db-sync, status checks, tempest, helm), the
upgrade report and the logs — and a secret masked in one of them but not the others is not masked.
The filter is applied at the boundaries, not at the call sites:

* ``activities/boundary.py``: a worker interceptor passes every activity's result and every
  ``ApplicationError`` (message and details) an activity raises through :func:`redact_value`;
* ``model/logs.py``: a structlog processor (:func:`redact_event`) masks every field of every log
  line of the worker, the CLI and the labs.

What is masked (the value only; the key, user name and host stay, so the text still says what failed):

* URLs with credentials: ``mysql+pymysql://keystone:s3cret@db/keystone`` → ``keystone:***@db``;
* ``key=value`` and ``key: value`` where the key names a secret (password, passwd, pwd, secret,
  token, api_key, private_key, credential…): INI/option-file lines such as MariaDB's
  ``password=...`` that the client echoes on errors, YAML, JSON, command-line ``--password=x``;
* HTTP headers ``X-Auth-Token``, ``X-Subject-Token``, ``Authorization: Bearer/Basic …``;
* Keystone Fernet tokens (``gAAAAA`` + URL-safe base64) wherever they appear;
* values an activity *knows* are secret (:func:`register`: the passwords of the option files and
  clouds.yaml entries it reads), wherever they appear, e.g. inside an unrelated error line.
  Values shorter than :data:`MIN_SECRET_LENGTH` are not registered: masking "admin" everywhere would
  mask service names; such a password is still masked where one of the patterns above finds it.

Pure (``re`` and ``threading`` only): the model layer imports nothing of ours, and the workflow
sandbox may import this module too.
"""

from __future__ import annotations

import configparser
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 6

# a key that names a secret: ends in one of these words (api_key, db_password, OS_PASSWORD, auth-token, ...)
_SECRET_WORD = r"(?:pass(?:word|wd)|pwd|secret|token|api[_-]?key|apikey|private[_-]?key|credentials?|auth[_-]?key)"
SECRET_KEY = re.compile(rf"(?i){_SECRET_WORD}$")
# Keys that *name* a Kubernetes Secret (credentials_secret, config_secret, *_secret_name): their
# value is a Secret's name, which is no secret (model/loading.py refuses inline values there).
_SECRET_REFERENCE = re.compile(r"(?i).+_secret(_name)?$")

_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/\s@'\"]+):(?P<pw>[^@\s/'\"]+)@")
_HEADER = re.compile(
    r"(?im)(?P<head>\b(?:x-auth-token|x-subject-token|x-service-token|x-api-key|authorization|proxy-authorization)"
    r"[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)(?P<val>[^\s\"',;]+)"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?P<head>(?<![A-Za-z0-9])[A-Za-z0-9_.-]*{_SECRET_WORD}[\"']?\s*(?:=|:(?!//))\s*[\"']?)"
    r"(?P<val>[^\s\"',;&}\]]+)"
)
_FERNET = re.compile(r"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}")

_lock = threading.Lock()
_known: set[str] = set()
_known_re: re.Pattern[str] | None = None


def register(*values: str | None) -> None:
    """Mask these values wherever they appear from now on, in this process (every thread)."""
    global _known_re
    new = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH and v != MASK}
    with _lock:
        if new <= _known:
            return
        _known.update(new)
        # longest first, so a secret that contains another is masked whole
        _known_re = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def register_option_file(path: str) -> None:
    """Register the passwords of a MariaDB/MySQL option file (``password=``, ``passwd=`` of any
    group); an unreadable or malformed file registers nothing (the tool reports it itself)."""
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            parser.read_file(f)
    except (OSError, configparser.Error):
        return
    register(*(_unquote(v) for s in parser.sections() for k, v in parser.items(s) if v and SECRET_KEY.search(k)))


def register_mapping(data: Any) -> None:
    """Register every secret-keyed scalar of a nested mapping (a clouds.yaml entry's ``auth``)."""
    if isinstance(data, Mapping):
        for k, v in data.items():
            if isinstance(v, str) and is_secret_key(str(k)):
                register(v)
            else:
                register_mapping(v)
    elif isinstance(data, list):
        for v in data:
            register_mapping(v)


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def is_secret_key(key: str) -> bool:
    """A field or option name whose value is a secret (not one that names a Kubernetes Secret)."""
    return bool(SECRET_KEY.search(key)) and not _SECRET_REFERENCE.match(key)


def redact(text: str) -> str:
    """``text`` with every secret the patterns and the registered values find replaced by ***."""
    if not text:
        return text
    known = _known_re
    if known is not None:
        text = known.sub(MASK, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _HEADER.sub(lambda m: m["head"] + MASK, text)
    text = _KEY_VALUE.sub(_key_value, text)
    return _FERNET.sub(MASK, text)


def _key_value(m: re.Match[str]) -> str:
    head = m["head"]
    key = re.split(r"[\"'\s=:]", head, maxsplit=1)[0]
    if _SECRET_REFERENCE.match(key) or m["val"] == MASK:
        return m.group(0)
    return head + MASK


def redact_value(value: Any) -> Any:
    """Every string inside ``value`` redacted: str, lists, tuples, dict values and pydantic models
    (copied, field by field); other values unchanged. A dict key is not a hint here: results map
    table names to checksums, and keystone's tables include ``password`` and ``credential``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    if isinstance(value, dict):  # by value only: keys are data here (keystone has tables "password", "credential")
        return {k: redact_value(v) for k, v in value.items()}
    fields = getattr(type(value), "model_fields", None)
    if fields is not None and hasattr(value, "model_copy"):
        update = {}
        for name in fields:
            old = getattr(value, name)
            new = redact_value(old)
            if new is not old and new != old:
                update[name] = new
        return value.model_copy(update=update) if update else value
    return value


def _masked(key: Any, value: Any) -> Any:
    """A log field: masked whole when its name says secret, else redacted by value."""
    if isinstance(key, str) and isinstance(value, str) and value and is_secret_key(key):
        return MASK
    return redact_value(value)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: every field of a log line redacted (secret-keyed fields masked whole)."""
    return {k: _masked(k, v) for k, v in event.items()}


def secrets_in(text: str, values: Iterable[str]) -> list[str]:
    """Which of ``values`` still appear in ``text`` (for tests and self-checks)."""
    return [v for v in values if v and v in text]
