"""Storage of assignments, exposures, orders and returns: one interface, two engines.

:class:`SQLiteStore` is the embedded default (a file, or memory); :class:`PostgresStore`
is for production (pg8000, pure Python). Both run the same SQL (the subset both speak:
``INSERT … ON CONFLICT DO NOTHING``, plain joins) and the same versioned migrations,
recorded in ``schema_migrations``; opening a store applies the ones it lacks, in order,
each in its own transaction. Times are integer milliseconds since the Unix epoch (UTC).

Delivery of events is at least once, so every insert is idempotent: exposures are keyed
by event id, orders by order id, order lines and returns by (order id, product id).
"""

from __future__ import annotations

import abc
import dataclasses
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError

# (version, description, statements). Append only: a released migration never changes.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "assignments, exposures, orders, order lines, returns",
        (
            """CREATE TABLE assignments (
                experiment_id TEXT NOT NULL, unit_id TEXT NOT NULL, variant TEXT NOT NULL,
                assigned_ms BIGINT NOT NULL, PRIMARY KEY (experiment_id, unit_id))""",
            """CREATE TABLE exposures (
                event_id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, variant TEXT NOT NULL,
                unit_id TEXT NOT NULL, product_id TEXT NOT NULL, ts_ms BIGINT NOT NULL)""",
            """CREATE TABLE orders (
                order_id TEXT PRIMARY KEY, unit_id TEXT NOT NULL, ts_ms BIGINT NOT NULL)""",
            """CREATE TABLE order_lines (
                order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,
                PRIMARY KEY (order_id, product_id))""",
            """CREATE TABLE returns (
                order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,
                ts_ms BIGINT NOT NULL, PRIMARY KEY (order_id, product_id))""",
        ),
    ),
    (
        2,
        "indexes of the report's join (exposures by experiment, by unit and product)",
        (
            "CREATE INDEX exposures_experiment ON exposures (experiment_id, variant)",
            "CREATE INDEX exposures_unit_product ON exposures (unit_id, product_id)",
            "CREATE INDEX orders_unit ON orders (unit_id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclasses.dataclass(frozen=True)
class Exposure:
    """A unit was shown a product under its variant."""

    event_id: str
    experiment_id: str
    variant: str
    unit_id: str
    product_id: str
    ts_ms: int


@dataclasses.dataclass(frozen=True)
class Order:
    """An order with its lines ``((product_id, quantity), …)``."""

    order_id: str
    unit_id: str
    ts_ms: int
    lines: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class Return:
    """Items of one order line sent back."""

    order_id: str
    product_id: str
    quantity: int
    ts_ms: int


@dataclasses.dataclass(frozen=True)
class AttributedOrder:
    """An order attributed to one variant (it bought a product the unit was exposed to
    within the attribution window), and whether an attributed line came back."""

    order_id: str
    variant: str
    ts_ms: int
    returned: bool


def now_ms() -> int:
    return int(time.time() * 1000)


class Store(abc.ABC):
    """What the experiment service and the report need from storage."""

    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- engine hooks
    @abc.abstractmethod
    def _connect(self) -> Any: ...

    def _open(self) -> None:
        self._conn = self._connect()
        self.migrate()

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _run(self, sql: str, params: Sequence = (), many: Iterable[Sequence] | None = None):
        """Run one statement in its own transaction; returns (rows, rowcount)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                if many is not None:
                    cur.executemany(self._sql(sql), list(many))
                else:
                    cur.execute(self._sql(sql), tuple(params))
                rows = cur.fetchall() if cur.description else []
                count = cur.rowcount
                self._conn.commit()
                return rows, count
            except BaseException:
                self._conn.rollback()
                raise
            finally:
                cur.close()

    # -- migrations
    def schema_version(self) -> int:
        """Highest applied migration (0 on an empty database)."""
        rows, _ = self._run("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, each in one transaction; returns the
        versions applied now."""
        self._run(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
        )
        have = self.schema_version()
        if have > SCHEMA_VERSION:
            raise ConfigError(
                "DRAPE_EXPERIMENTS_DB",
                f"the database is at schema version {have}, newer than this release's "
                f"{SCHEMA_VERSION}: upgrade Drape",
            )
        applied = []
        for version, desc, statements in MIGRATIONS:
            if version <= have:
                continue
            with self._lock:
                cur = self._conn.cursor()
                try:
                    for stmt in statements:
                        cur.execute(stmt)
                    cur.execute(
                        self._sql(
                            "INSERT INTO schema_migrations (version, description, applied_ms) "
                            "VALUES (?, ?, ?)"
                        ),
                        (version, desc, now_ms()),
                    )
                    self._conn.commit()
                except BaseException:
                    self._conn.rollback()
                    raise
                finally:
                    cur.close()
            applied.append(version)
        return applied

    # -- writes
    def record_assignment(self, experiment_id: str, unit_id: str, variant: str, ts_ms: int) -> bool:
        """Store a unit's assignment the first time it is seen; True when new."""
        _, n = self._run(
            "INSERT INTO assignments (experiment_id, unit_id, variant, assigned_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (experiment_id, unit_id, variant, ts_ms),
        )
        return n == 1

    def add_exposure(self, e: Exposure) -> bool:
        """Store one exposure; False when its event id was stored before."""
        _, n = self._run(
            "INSERT INTO exposures (event_id, experiment_id, variant, unit_id, product_id, "
            "ts_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            dataclasses.astuple(e),
        )
        return n == 1

    def add_exposures(self, items: Iterable[Exposure]) -> None:
        """Store many exposures (duplicates ignored)."""
        self._run(
            "INSERT INTO exposures (event_id, experiment_id, variant, unit_id, product_id, "
            "ts_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            many=(dataclasses.astuple(e) for e in items),
        )

    def add_orders(self, orders: Iterable[Order]) -> None:
        """Store orders and their lines (an order id seen before is ignored)."""
        orders = list(orders)
        self._run(
            "INSERT INTO orders (order_id, unit_id, ts_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            many=((o.order_id, o.unit_id, o.ts_ms) for o in orders),
        )
        self._run(
            "INSERT INTO order_lines (order_id, product_id, quantity) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            many=((o.order_id, p, q) for o in orders for p, q in o.lines),
        )

    def add_returns(self, returns: Iterable[Return]) -> None:
        """Store returns (one per order line; repeats ignored)."""
        self._run(
            "INSERT INTO returns (order_id, product_id, quantity, ts_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            many=(dataclasses.astuple(r) for r in returns),
        )

    # -- reads
    def assigned_units(self, experiment_id: str) -> dict[str, int]:
        """Units assigned (Assign calls), by variant."""
        rows, _ = self._run(
            "SELECT variant, COUNT(*) FROM assignments WHERE experiment_id = ? GROUP BY variant",
            (experiment_id,),
        )
        return {v: int(n) for v, n in rows}

    def exposure_counts(self, experiment_id: str) -> dict[str, tuple[int, int]]:
        """``{variant: (exposures, distinct units exposed)}``."""
        rows, _ = self._run(
            "SELECT variant, COUNT(*), COUNT(DISTINCT unit_id) FROM exposures "
            "WHERE experiment_id = ? GROUP BY variant",
            (experiment_id,),
        )
        return {v: (int(n), int(u)) for v, n, u in rows}

    def conflicting_units(self, experiment_id: str) -> int:
        """Units exposed under more than one variant (a broken integration)."""
        rows, _ = self._run(
            "SELECT COUNT(*) FROM (SELECT unit_id FROM exposures WHERE experiment_id = ? "
            "GROUP BY unit_id HAVING COUNT(DISTINCT variant) > 1) AS c",
            (experiment_id,),
        )
        return int(rows[0][0])

    def attributed_orders(
        self, experiment_id: str, window_ms: int
    ) -> list[tuple[str, str, int, bool]]:
        """``(order_id, variant, ts_ms, returned)`` for every (order, variant) where a line of
        the order is a product the ordering unit was exposed to in the experiment, at most
        ``window_ms`` before the order; ``returned`` when such a line was returned."""
        rows, _ = self._run(
            """SELECT o.order_id, e.variant, o.ts_ms,
                      MAX(CASE WHEN r.order_id IS NULL THEN 0 ELSE 1 END)
               FROM exposures e
               JOIN orders o ON o.unit_id = e.unit_id
               JOIN order_lines l ON l.order_id = o.order_id AND l.product_id = e.product_id
               LEFT JOIN returns r ON r.order_id = l.order_id AND r.product_id = l.product_id
               WHERE e.experiment_id = ? AND e.ts_ms <= o.ts_ms AND e.ts_ms >= o.ts_ms - ?
               GROUP BY o.order_id, e.variant, o.ts_ms""",
            (experiment_id, int(window_ms)),
        )
        return [(oid, v, int(ts), bool(r)) for oid, v, ts, r in rows]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = getattr(self, "_conn", None), None
            if conn is not None:
                conn.close()


class SQLiteStore(Store):
    """The embedded default: a SQLite file (``":memory:"`` for a scratch store)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        super().__init__()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _connect(self):
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute(
            "PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA foreign_keys=ON"
        )
        return conn


class PostgresStore(Store):
    """PostgreSQL over pg8000 (``postgresql://user:password@host:port/database``)."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        u = urllib.parse.urlsplit(url)
        self._params = {
            "user": urllib.parse.unquote(u.username or "postgres"),
            "password": urllib.parse.unquote(u.password) if u.password else None,
            "host": u.hostname or "127.0.0.1",
            "port": u.port or 5432,
            "database": (u.path or "/").lstrip("/") or "postgres",
            "timeout": 30,
        }
        self._open()

    def _connect(self):
        import pg8000.dbapi

        return pg8000.dbapi.connect(**self._params)


def open_store(url: str) -> Store:
    """A store from a URL: ``sqlite:///PATH``, ``sqlite://:memory:``, a plain file path, or
    ``postgresql://…``.

    Raises:
        ConfigError: an unknown scheme, or a database that cannot be opened.
    """
    try:
        if url.startswith(("postgresql://", "postgres://")):
            return PostgresStore(url)
        if url.startswith("sqlite://"):
            rest = url[len("sqlite://") :]
            return SQLiteStore(
                rest[1:] if rest.startswith("/") and rest != "/:memory:" else rest.lstrip("/")
            )
        if "://" in url:
            raise ConfigError(
                "DRAPE_EXPERIMENTS_DB",
                f"unknown scheme in {url.split('://')[0]!r}: use sqlite:/// or postgresql://",
            )
        return SQLiteStore(url)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a start-up error naming the setting
        raise ConfigError(
            "DRAPE_EXPERIMENTS_DB",
            f"cannot open the experiment store: {exc.__class__.__name__}: {exc}",
        ) from None
