"""What every source shares: a source is mostly declarations, this module turns them into work.

A source module declares
- ``STREAMS``: each stream (one walk of one collection), its record schema, the datasets it feeds
  and how a page becomes each dataset's rows, and the API filters it takes;
- ``Options``: a frozen dataclass whose fields are its job-file keys (typed, defaulted once);
- ``ENV_PREFIX`` and ``CREDENTIALS``: the environment variables its credentials come from;
- the few behaviours that really differ: ``auth`` (how it signs requests), ``read_error`` (its
  error bodies), ``sandbox`` (its simulator), and hooks where it has something to say.

:class:`Source` gives the rest sane defaults, so a source carries no method that does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from ..errors import AuthError
from ..estimate import Coverage
from ..http import Auth, ClientSettings, HttpClient, Response, RetryPolicy
from ..incremental import cursor_after_walk, seed_walk_state, with_observation
from ..jobs import SourceOptions, SourceSpec
from ..schema import RecordSchema
from ..walk import Emit, Page
from .canonical import snapshot_time

Projection = Callable[[pa.Table, Page], pa.Table]


class Walk(Protocol):
    async def run(
        self, client: HttpClient, emit: Emit, state: dict[str, Any], coverage: Coverage | None = None
    ) -> None: ...


@dataclass
class Stream:
    """One walk of one collection and the datasets it feeds (what the runner runs)."""

    name: str
    schema: RecordSchema
    walk: Walk
    outputs: dict[str, Projection]
    null_tokens: frozenset[str] = frozenset()
    # report cells are pre-formatted text: a new column of numeric cells becomes a decimal (drift.py)
    text_cells: bool = False
    # incremental streams: the cursor key (filters included) and where each run's rows go
    incremental: str | None = None
    # how an incremental stream's cursor works (default: ids, as for trades): the walk state a
    # published cursor seeds, what each written page adds to the walk state, and the next cursor
    seed: Callable[[dict[str, Any] | None], dict[str, Any]] = seed_walk_state
    observe: Callable[[dict[str, Any], pa.Table], dict[str, Any]] = with_observation
    cursor: Callable[[str, dict[str, Any]], dict[str, Any]] = cursor_after_walk

    def folder(self, dataset: str) -> str:
        """The dataset's folder: incremental tables are kept apart from snapshots."""
        return f"{dataset}_incremental" if self.incremental else dataset


# A feed turns a stream's table into one dataset's rows; it is given the source (its name goes
# into the ``source`` column of the canonical tables).
Feed = Callable[[Any], Projection]


@dataclass(frozen=True)
class Dataset:
    """A dataset a stream feeds: its name, how a page becomes its rows, and its id column (the
    order of an ad hoc pull, and what ``--limit`` counts in)."""

    name: str
    feed: Feed
    key: str = "id"
    # exported when a job names no datasets (a costly extra such as balance history is asked for)
    default: bool = True


@dataclass(frozen=True)
class StreamDef:
    """A stream as data. ``walk`` and callable ``schema`` are given the source (its options,
    page size, filters); ``when`` picks between variants of one stream (snapshot or incremental)."""

    name: str
    schema: RecordSchema | Callable[[Any], RecordSchema]
    walk: Callable[[Any], Walk]
    datasets: tuple[Dataset, ...]
    # the API's own filters this stream's requests take (``exporter pull --param``): name -> meaning
    filters: Mapping[str, str] = field(default_factory=dict)
    null_tokens: frozenset[str] = frozenset()
    text_cells: bool = False
    when: Callable[[Any], bool] = lambda source: True
    incremental: Callable[[Any], str | None] = lambda source: None
    # an incremental stream whose cursor is not an id (balance history: a date), given the source
    cursor_kind: Callable[[Any], Any] | None = None


@dataclass
class Connection:
    """Where and as whom to connect; built from the environment or a sandbox."""

    base_url: str
    credentials: dict[str, str] = field(default_factory=dict, repr=False)  # never in a log line
    verify_tls: bool = True
    ca_bundle: str | None = None
    base_url_from: str = ""  # the variable that set base_url, named when its host is out of reach


# ---- feeds every source may use


def as_is(source: Any) -> Projection:
    return identity


def stamped(source: Any) -> Projection:
    """The records as they are, plus the time their page was fetched (live values of that moment)."""
    return with_snapshot_time


def identity(table: pa.Table, page: Page) -> pa.Table:
    return table


def with_snapshot_time(table: pa.Table, page: Page) -> pa.Table:
    return table.append_column("snapshot_at", snapshot_time(table.num_rows, page))


def written_names(project: Projection) -> Callable[[str], tuple[str, ...]]:
    """The columns a projection writes a record field as: its own ``written_names`` where it renames
    (TraderEvolution statement columns become ``te_*``), else the field's own name."""
    names = getattr(project, "written_names", None)
    return names if names is not None else lambda column: (column,)


# ---- the base class


class Source:
    """An API as declarations; subclasses set the class attributes and the few methods below."""

    kind: ClassVar[str]
    STREAMS: ClassVar[tuple[StreamDef, ...]]
    DATASETS: ClassVar[tuple[str, ...]]  # derived from STREAMS, in their order
    DEFAULT_DATASETS: ClassVar[tuple[str, ...]]  # those a job without ``datasets`` exports
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    ENV_PREFIX: ClassVar[str]  # TRADESYNC: credentials from TRADESYNC_API_KEY, ...
    # credential -> the variable's suffix (PREFIX_SUFFIX), in the order messages name them
    CREDENTIALS: ClassVar[Mapping[str, str]]
    DEFAULT_BASE_URL: ClassVar[str | None] = None  # None: PREFIX_BASE_URL must be set
    BASE_URL_FORM: ClassVar[str] = ""  # what a base URL looks like, for the message when it is missing
    DEFAULT_RPS: ClassVar[float | None] = None
    DEFAULT_PAGE_SIZE: ClassVar[int] = 1000
    PACE_PER_COLLECTION: ClassVar[bool] = False  # the API limits each collection separately

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "STREAMS" in cls.__dict__:
            cls.DATASETS = tuple(dict.fromkeys(d.name for s in cls.STREAMS for d in s.datasets))
            cls.DEFAULT_DATASETS = tuple(dict.fromkeys(d.name for s in cls.STREAMS for d in s.datasets if d.default))

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.options: Any = spec.options if isinstance(spec.options, self.Options) else self.Options()
        self.env_prefix = spec.env_prefix or self.ENV_PREFIX

    # ---- where the credentials come from

    def variable(self, suffix: str) -> str:
        return f"{self.env_prefix}_{suffix}"

    @property
    def base_url_variable(self) -> str:
        return self.variable("BASE_URL")

    @property
    def credential_variables(self) -> list[str]:
        return [self.variable(suffix) for suffix in self.CREDENTIALS.values()]

    @property
    def auth_hint(self) -> str:
        return "check " + " and ".join(self.credential_variables)

    def connection(self, env: Mapping[str, str]) -> Connection:
        """The base URL and credentials from the environment; a missing one names its variable."""
        url = env.get(self.base_url_variable, "")
        if not url and self.DEFAULT_BASE_URL is None:
            form = f" ({self.BASE_URL_FORM})" if self.BASE_URL_FORM else ""
            raise AuthError(f"sources.{self.name}: set {self.base_url_variable}{form}")
        credentials = {key: env.get(self.variable(suffix), "") for key, suffix in self.CREDENTIALS.items()}
        if not all(credentials.values()):
            raise AuthError(f"sources.{self.name}: set {' and '.join(self.credential_variables)} "
                            f"(or add a [sources.{self.name}.sandbox] table)")
        origin = self.base_url_variable if url else f"{self.base_url_variable}'s default"
        return Connection(url or str(self.DEFAULT_BASE_URL), credentials, base_url_from=origin)

    # ---- what every source must say

    def sandbox(self) -> AbstractContextManager[Connection]:
        """Start the built-in simulator with the job's ``sandbox`` settings; yield how to reach it."""
        raise NotImplementedError

    def auth(self, connection: Connection) -> Auth:
        raise NotImplementedError

    def read_error(self, response: Response) -> str:
        """An error response as a short text: the API's own code and message."""
        ctype = response.headers.get("Content-Type", "?")
        return f"HTTP {response.status}, {ctype}, {len(response.body)} bytes"

    # ---- defaults a source overrides only when it has something to add

    def on_response(self, response: Response) -> float | None:
        """A pause the API asks for beyond ``Retry-After`` (TraderEvolution: a blocked token)."""
        return None

    def client_settings(self, connection: Connection) -> ClientSettings:
        spec = self.spec
        return ClientSettings(
            base_url=connection.base_url,
            concurrency=spec.concurrency,
            rps=spec.rps,
            retry=RetryPolicy(max_attempts=spec.max_attempts, max_elapsed=spec.retry_seconds),
            verify_tls=connection.verify_tls,
            ca_bundle=connection.ca_bundle,
            base_url_from=connection.base_url_from,
            pace_per_collection=self.PACE_PER_COLLECTION,
        )

    def manifest_extra(self) -> dict[str, Any]:
        """Source settings each manifest records (TraderEvolution: the zone of report times)."""
        return {}

    # ---- streams from the declarations

    @classmethod
    def filters(cls, dataset: str) -> Mapping[str, str]:
        """The API filters the stream feeding ``dataset`` takes (name -> what it does)."""
        found: dict[str, str] = {}
        for definition in cls.STREAMS:
            if any(d.name == dataset for d in definition.datasets):
                found.update(definition.filters)
        return found

    @classmethod
    def key_of(cls, dataset: str) -> str:
        """The id column of ``dataset``."""
        return next(d.key for s in cls.STREAMS for d in s.datasets if d.name == dataset)

    def streams(self) -> list[Stream]:
        """The streams the chosen datasets need, each feeding only the chosen ones."""
        chosen = set(self.spec.datasets)
        return list(self._streams(chosen))

    def _streams(self, chosen: set[str]) -> Iterator[Stream]:
        for definition in self.STREAMS:
            wanted = [d for d in definition.datasets if d.name in chosen]
            if not wanted or not definition.when(self):
                continue
            schema = definition.schema if isinstance(definition.schema, RecordSchema) else definition.schema(self)
            kind = {} if definition.cursor_kind is None else definition.cursor_kind(self)
            yield Stream(
                definition.name,
                schema,
                definition.walk(self),
                {d.name: d.feed(self) for d in wanted},
                null_tokens=definition.null_tokens,
                text_cells=definition.text_cells,
                incremental=definition.incremental(self),
                **kind,
            )
