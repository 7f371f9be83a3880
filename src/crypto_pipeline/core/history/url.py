"""HISTORY_URL: which database holds the history, and how it is shown without its password.

    sqlite:///./data/history.sqlite      a file, relative to the project
    sqlite:////var/lib/crypto/h.sqlite   a file, absolute path (four slashes)
    postgresql://user:password@host:5432/database[?sslmode=require&...]
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from crypto_pipeline.core.paths import PROJECT_ROOT

SQLITE, POSTGRESQL = "sqlite", "postgresql"
# libpq takes both spellings.
_ENGINES = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "postgres": POSTGRESQL}
EXPECTED = ("expected sqlite:///path/to/file.sqlite or "
            "postgresql://user:password@host:port/database")
MASK = "***"


def engine_of(url: str) -> str:
    """SQLITE or POSTGRESQL, for a URL `parse_history_url` accepted."""
    return _ENGINES[urlsplit(url).scheme]


def parse_history_url(text: str) -> str:
    """The URL checked, with a SQLite path made absolute (relative paths are anchored at
    the project, as every path setting is); ValueError says what is wrong."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        engine = _ENGINES.get(parts.scheme) if "://" in text else None
        if engine == SQLITE:
            return sqlite_url(_sqlite_path(parts.netloc, parts.path, parts.query))
        if engine == POSTGRESQL:
            parts.port  # noqa: B018 - raises ValueError for a port that is no number
            if not parts.path.strip("/"):
                raise ValueError("no database name after the host")
            return text
    except ValueError as err:
        raise ValueError(f"{EXPECTED} ({err})") from None
    raise ValueError(EXPECTED)


def _sqlite_path(netloc: str, path: str, query: str) -> Path:
    if netloc or query or not path.lstrip("/"):
        raise ValueError("sqlite:/// then the file's path")
    # sqlite:///relative/file and sqlite:////absolute/file: the third slash ends the
    # (empty) host.
    file = Path(path[1:]).expanduser()
    return file if file.is_absolute() else PROJECT_ROOT / file


def sqlite_file(text: str) -> str:
    """HISTORY_DB, the setting's old form: a SQLite file path, as a URL."""
    if not text.strip():
        raise ValueError("must not be empty")
    path = Path(text.strip()).expanduser()
    return sqlite_url(path if path.is_absolute() else PROJECT_ROOT / path)


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path)}"


def sqlite_path(url: str) -> Path:
    """The file of a sqlite URL `parse_history_url` returned."""
    return Path(urlsplit(url).path[1:])


def mask_password(text: str) -> str:
    """The URL with its password (user info or a `password` parameter) replaced by ***;
    all of it masked when it does not even parse."""
    try:
        parts = urlsplit(text)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        has_parameter = any(key == "password" for key, _ in pairs)
        if parts.password is None and not has_parameter:
            return text
        netloc = parts.netloc
        if parts.password is not None:
            user_info, _, host = netloc.rpartition("@")
            netloc = f"{user_info.split(':', 1)[0]}:{MASK}@{host}"
        query = urlencode([(key, MASK if key == "password" else value) for key, value in pairs],
                          safe="*/")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return MASK


def without_password(text: str, url: str) -> str:
    """`text` (a driver's error) with the URL's password masked wherever it appears: libpq
    quotes the part of a URL it cannot read, which may be the password."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""] + [value for key, value in parse_qsl(parts.query)
                                            if key == "password"]
    except ValueError:
        return MASK
    for secret in secrets:
        for form in {secret, unquote(secret)} - {""}:
            text = text.replace(form, MASK)
    return text
