"""The App: one object that declares a domain for eventray to host.

A user's package declares it once and points every command at it by import path
(``EVENTRAY_APP=shop.app:app`` or ``--app shop.app:app``), as ``uvicorn main:app`` does::

    app = eventray.App(
        "shop",
        aggregates=[ORDER, PRODUCT],
        projections=[StockLevels],
        sagas=[eventray.Saga(Fulfilment, policy=FulfilmentPolicy)],
        graphql=eventray.GraphQLExtension(sdl=SDL, resolvers=[query], commands={PlaceOrder: customers}),
    )

Everything is checked when the App is built, so a mistake shows where it was made: event
class names that collide across aggregates, a command type that no aggregate handles, a
projection or saga reacting to an event no aggregate emits, two pieces with one name. Actors
and replicas receive the import path, never the object, and import the app on their worker.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventray.platform.domain import AggregateType, Command, Event, event_tag
from eventray.platform.errors import AppInvalid, AppNotFound, DuplicateEventType, NotAnApp, UnknownCommandType
from eventray.platform.projections.definition import Projection
from eventray.platform.projections.event_index import event_index as make_event_index
from eventray.platform.sagas.definition import SagaDefinition

__all__ = ["App", "GraphQLExtension", "Saga", "load_app"]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}")

#: ``async rule(principal, command, context) -> None``: raises Forbidden to refuse the command
CommandRule = Callable[..., Any]


@dataclass(frozen=True)
class Saga:
    """A saga the app runs, with how its definition and its services are built.

    Attributes:
        definition: the :class:`SagaDefinition` subclass (pure).
        policy: ``policy() -> object`` builds the definition's configuration (timeouts, limits),
            called on each coordinator and client; the definition is ``definition(policy())``.
            ``None``: ``definition()``.
        services: ``services(settings, policy) -> {name: async callable}``, the services the
            saga's :class:`~eventray.platform.sagas.definition.Ask` effects name (a model, a
            rule). Called inside the coordinator's event loop, so clients bind to it.
    """

    definition: type[SagaDefinition[Any]]
    policy: Callable[[], Any] | None = None
    services: Callable[[Any, Any], Mapping[str, Callable[..., Any]]] | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    def build(self, policy: Any = None) -> SagaDefinition[Any]:
        """The definition instance, with ``policy`` or the one the factory builds."""
        if policy is None and self.policy is not None:
            policy = self.policy()
        return self.definition(policy) if policy is not None else self.definition()  # type: ignore[call-arg]


@dataclass(frozen=True)
class GraphQLExtension:
    """What an app adds to the platform's GraphQL schema.

    The platform generates one mutation per command listed in ``commands`` (input fields from
    the command's msgspec fields and their ``Meta`` constraints) and merges ``sdl`` and
    ``resolvers`` with its own schema (``CommandResult``, ``events``, ``projections``,
    ``submitCommands``).

    Attributes:
        sdl: the app's SDL text (``extend type Query { ... }`` for its read models), or a
            :class:`~pathlib.Path` to a ``.graphql`` file.
        resolvers: Ariadne bindables (``QueryType``, ``ObjectType``, ``ScalarType``, ...).
        commands: the commands exposed as mutations, each with its authorisation rule,
            ``async rule(principal, command, context)``, which raises ``Forbidden`` to refuse.
            Commands left out (a saga's internal steps) get no mutation.
        setup: ``setup(services) -> object``, run once per replica after the platform's
            services start; the result is ``context["app"]`` in resolvers and rules.
        loaders: ``loaders(context) -> {name: DataLoader}``, per request, as ``context["loaders"]``.
        events_rule: ``async rule(principal, aggregate_type, aggregate_id, context)``: who may
            follow which aggregates' events (the ``events`` subscription); raises ``Forbidden``.
            ``None``: everyone but customers.
    """

    sdl: str | Path = ""
    resolvers: Sequence[Any] = ()
    commands: Mapping[type[Command], CommandRule] = field(default_factory=dict)
    setup: Callable[[Any], Any] | None = None
    loaders: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None
    events_rule: Callable[..., Any] | None = None

    def sdl_text(self) -> str:
        return self.sdl.read_text() if isinstance(self.sdl, Path) else self.sdl


class App:
    """A domain for eventray to host: aggregates, projections, sagas, GraphQL, models.

    Args:
        name: a lower-case identifier (``"shop"``); names the Serve application and logs.
        aggregates: the :class:`AggregateType` s; their event class names must be unique.
        projections: :class:`Projection` subclasses, unique by ``name``.
        sagas: :class:`SagaDefinition` subclasses, or :class:`Saga` s with their factories.
        graphql: a :class:`GraphQLExtension`, or ``"module:attr"`` naming one (imported on the
            GraphQL replicas only, so shards never import Ariadne). ``None``: the platform's
            schema with a mutation per command, admins only.
        models: registry names of the model deployments the app uses (``"anomaly"``).
        topic: the event topic; default ``"<name>.events"``. ``EVENTRAY_TOPIC`` overrides it.
        chaos: ``"module:attr"`` of the workload ``eventray chaos monkey`` drives against the app,
            with the domain's invariants it checks afterwards (see :mod:`eventray.platform.chaos.monkey`).
        upcasters: ``{(event tag, from schema version): fn}`` for the event codec.
        event_index: add the event index (:mod:`eventray.platform.projections.event_index`),
            a projection named ``<name>_event_index`` with one row per event by aggregate and by
            correlation id, after the declared projections; the console's Events screen reads it.
            ``False``: leave it out (it writes every event to PostgreSQL once more).

    Raises:
        AppInvalid: and its subclasses, naming what to change.
    """

    def __init__(
        self,
        name: str,
        *,
        aggregates: Sequence[AggregateType[Any]],
        projections: Sequence[type[Projection]] = (),
        sagas: Sequence[type[SagaDefinition[Any]] | Saga] = (),
        graphql: GraphQLExtension | str | None = None,
        models: Sequence[str] = (),
        topic: str | None = None,
        chaos: str | None = None,
        upcasters: Mapping[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
        event_index: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AppInvalid(f"App name must be a lower-case identifier (letters, digits, - and _), got {name!r}")
        self.name = name
        self.topic = topic or f"{name}.events"
        self.aggregates: tuple[AggregateType[Any], ...] = tuple(aggregates)
        self.projections: dict[str, type[Projection]] = {}
        self.sagas: dict[str, Saga] = {}
        self.graphql = graphql
        self.models: tuple[str, ...] = tuple(models)
        self.upcasters = dict(upcasters or {})
        self.chaos = chaos
        #: ``module:attr`` this app was loaded from (:func:`load_app` sets it)
        self.import_path: str | None = None
        self._check_aggregates()
        self._owner: dict[type[Command], AggregateType[Any]] = {
            c: a for a in self.aggregates for c in a.commands}
        emitted = set(self.event_types)
        for p in projections:
            self._add_projection(p, emitted)
        if event_index:
            self._add_projection(make_event_index(self), emitted)
        for s in sagas:
            self._add_saga(s if isinstance(s, Saga) else Saga(s), emitted)
        if isinstance(graphql, GraphQLExtension):
            self.check_commands(graphql.commands, where="GraphQLExtension.commands")
        elif graphql is not None and not (isinstance(graphql, str) and ":" in graphql):
            raise AppInvalid(f"App {name!r}: graphql must be a GraphQLExtension or 'module:attr', got {graphql!r}")

    # --- checks ------------------------------------------------------------------------------

    def _check_aggregates(self) -> None:
        if not self.aggregates:
            raise AppInvalid(f"App {self.name!r} declares no aggregates; pass aggregates=[...]")
        seen: dict[str, AggregateType[Any]] = {}
        tags: dict[str, str] = {}
        commands: dict[type, str] = {}
        for agg in self.aggregates:
            if not isinstance(agg, AggregateType):
                raise AppInvalid(f"App {self.name!r}: {agg!r} is not an eventray.AggregateType")
            if agg.name in seen:
                raise AppInvalid(f"App {self.name!r} declares two aggregates named {agg.name!r}")
            seen[agg.name] = agg
            for event_type in agg.events:
                tag = event_tag(event_type)
                if tag in tags and tags[tag] != agg.name:
                    raise DuplicateEventType(
                        f"App {self.name!r}: aggregates {tags[tag]!r} and {agg.name!r} both have an event named "
                        f"{tag!r}; event class names are the tags stored in the log, so rename one of them "
                        "(or give it an explicit tag=...)", event=tag)
                tags[tag] = agg.name
            for command in agg.commands:
                if command in commands and commands[command] != agg.name:
                    raise AppInvalid(f"App {self.name!r}: command {command.__name__} is handled by both "
                                     f"{commands[command]!r} and {agg.name!r}; a command has one aggregate")
                commands[command] = agg.name

    def check_commands(self, commands: Iterable[type], *, where: str) -> None:
        """Raise :class:`UnknownCommandType` for any of ``commands`` that no aggregate handles."""
        for command in commands:
            if command not in self._owner:
                name = getattr(command, "__name__", repr(command))
                raise UnknownCommandType(
                    f"App {self.name!r}: {where} names {name}, but no aggregate of the app handles it; add it to "
                    f"an aggregate's commands=(...) or remove it", command=name)

    def _add_projection(self, cls: type[Projection], emitted: set[type]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Projection)):
            raise AppInvalid(f"App {self.name!r}: {cls!r} is not a Projection subclass")
        cls()  # checks name, tables and schema_sql, with their own messages
        if cls.name in self.projections:
            raise AppInvalid(f"App {self.name!r} declares two projections named {cls.name!r}")
        foreign = [t.__name__ for t in cls._handlers if t not in emitted]
        if foreign:
            raise AppInvalid(f"projection {cls.name!r} handles {', '.join(sorted(foreign))}, which no aggregate of "
                             f"App {self.name!r} emits")
        self.projections[cls.name] = cls

    def _add_saga(self, saga: Saga, emitted: set[type]) -> None:
        definition = saga.definition
        if not (isinstance(definition, type) and issubclass(definition, SagaDefinition)):
            raise AppInvalid(f"App {self.name!r}: {definition!r} is not a SagaDefinition subclass")
        name = getattr(definition, "name", None)
        if not isinstance(name, str) or not name:
            raise AppInvalid(f"saga {definition.__qualname__} must set a class attribute name = '...'")
        if name in self.sagas:
            raise AppInvalid(f"App {self.name!r} declares two sagas named {name!r}")
        foreign = [t.__name__ for t in definition.event_types if t not in emitted]
        if foreign:
            raise AppInvalid(f"saga {name!r} reacts to {', '.join(sorted(foreign))}, which no aggregate of "
                             f"App {self.name!r} emits")
        self.sagas[name] = saga

    # --- lookups -----------------------------------------------------------------------------

    @property
    def event_types(self) -> tuple[type[Event], ...]:
        """Every event class of every aggregate, for the codec."""
        return tuple(e for a in self.aggregates for e in a.events)

    @property
    def command_types(self) -> tuple[type[Command], ...]:
        return tuple(self._owner)

    def aggregate_of(self, command: type[Command]) -> AggregateType[Any]:
        """The aggregate that handles ``command``; :class:`UnknownCommandType` when none does."""
        found = self._owner.get(command)
        if found is None:
            self.check_commands([command], where="a command sent")
        return found  # type: ignore[return-value]

    def projection(self, name: str) -> type[Projection]:
        """The projection class called ``name``; :class:`AppInvalid` naming the known ones."""
        cls = self.projections.get(name)
        if cls is None:
            raise AppInvalid(f"App {self.name!r} has no projection named {name!r}; known: "
                             f"{', '.join(sorted(self.projections)) or 'none'}")
        return cls

    def saga(self, name: str) -> Saga:
        """The saga called ``name``; :class:`AppInvalid` naming the known ones."""
        found = self.sagas.get(name)
        if found is None:
            raise AppInvalid(f"App {self.name!r} has no saga named {name!r}; known: "
                             f"{', '.join(sorted(self.sagas)) or 'none'}")
        return found

    def graphql_extension(self) -> GraphQLExtension:
        """The GraphQL extension, imported now when it was given as ``module:attr``."""
        ext = self.graphql
        if ext is None:
            return GraphQLExtension()
        if isinstance(ext, str):
            found = _import_attr(ext, what="GraphQL extension")
            if not isinstance(found, GraphQLExtension):
                raise AppInvalid(f"{ext} is a {type(found).__name__}, not an eventray.GraphQLExtension")
            self.check_commands(found.commands, where=f"{ext}.commands")
            self.graphql = ext = found
        return ext

    def __repr__(self) -> str:
        return (f"App({self.name!r}, aggregates={[a.name for a in self.aggregates]}, "
                f"projections={list(self.projections)}, sagas={list(self.sagas)})")


def _import_attr(path: str, *, what: str) -> Any:
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if not module_name:
        raise AppNotFound(f"{what} path {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise AppNotFound(
                f"could not import {module_name!r} for the {what} {path!r}: no module named {e.name!r}. "
                "Run from the folder that holds the package, or pip install it", path=path) from None
        raise AppNotFound(f"importing {module_name!r} for the {what} {path!r} failed: {e}", path=path) from e
    except Exception as e:  # noqa: BLE001 - any error inside the user's module: say where
        raise AppNotFound(f"importing {module_name!r} for the {what} {path!r} failed: {type(e).__name__}: {e}",
                          path=path) from e
    try:
        return getattr(module, attr)
    except AttributeError:
        apps = [n for n, v in vars(module).items() if isinstance(v, App)]
        hint = f"; it has {', '.join(apps)}" if apps else ""
        raise AppNotFound(f"module {module_name!r} has no attribute {attr!r}{hint}", path=path) from None


def load_app(path: str) -> App:
    """Import the :class:`App` at ``path`` (``"package.module:attr"``; ``attr`` defaults to ``app``).

    Raises:
        AppNotFound: the module does not import, or has no such attribute.
        NotAnApp: the attribute is not an :class:`App`.
    """
    found = _import_attr(path, what="app")
    if not isinstance(found, App):
        raise NotAnApp(f"{path} is a {type(found).__name__}, not an eventray.App; point --app (EVENTRAY_APP) "
                       "at the App object, e.g. shop.app:app", path=path)
    found.import_path = found.import_path or (path if ":" in path else f"{path}:app")
    return found


def app_package_dir(app: App) -> Path | None:
    """The folder of the top-level package that holds ``app``'s module, when it is not eventray's.

    Ray workers import the app from there (it travels as a ``py_modules`` entry).
    """
    if not app.import_path:
        return None
    top = app.import_path.partition(":")[0].split(".")[0]
    if top == "eventray":
        return None
    module = sys.modules.get(top)
    location = getattr(module, "__file__", None)
    if location is None:
        paths = list(getattr(module, "__path__", []) or [])
        return Path(paths[0]) if paths else None
    path = Path(location)
    return path.parent if path.name == "__init__.py" else path
