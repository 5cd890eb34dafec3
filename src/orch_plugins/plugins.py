"""The plugin manager and the typed facade the core calls.

Built-ins are plain plugin modules listed in :data:`BUILTINS` and registered in code; third-party
plugins come from the ``orch_plugins`` entry-point group, each loaded on its own so one broken
plugin is reported and skipped. Entry points are scanned only when a name is not found among the
built-ins, or when everything is listed (the scan costs tens of milliseconds).

Environment knobs: ``ORCH_PLUGINS_ALLOW`` (comma-separated entry-point names: load only these
third-party plugins), ``ORCH_PLUGINS_BLOCK`` (names never to load, built-in short names included),
``ORCH_PLUGINS_TRACE=1`` (print every hook call to stderr).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pluggy

from orch_plugins import hookspecs
from orch_plugins.backend import Backend, BackendContext, BackendRegistry, LaunchOption
from orch_plugins.errors import OrchError
from orch_plugins.roles import Role, RoleRegistry

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint  # imported when entry points are scanned

log = logging.getLogger(__name__)

App = TypeVar("App")


class _Registry(Protocol):
    """What a registration hook fills: told which plugin is registering, for its errors."""

    current_owner: str


R = TypeVar("R", bound=_Registry)

ENTRY_POINT_GROUP = "orch_plugins"

#: Built-in plugins: (short name, module). Registered exactly like third-party ones.
BUILTINS: tuple[tuple[str, str], ...] = (
    ("subprocess", "orch_plugins.backends.subprocess"),
    ("tmux", "orch_plugins.backends.tmux"),
    ("ssh", "orch_plugins.backends.ssh"),
    ("ray", "orch_plugins.backends.ray"),
    ("builtin_roles", "orch_plugins.roles.builtin"),
    ("claude_agents", "orch_plugins.roles.claude_agents"),
)


def discover_entry_points() -> list[EntryPoint]:
    """Third-party plugin entry points; tests replace this function."""
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _names(env: str) -> set[str]:
    return {n.strip() for n in os.environ.get(env, "").split(",") if n.strip()}


@dataclass
class PluginInfo:
    name: str
    source: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


class Plugins:
    """Owns one ``pluggy.PluginManager``; builds the backend and role registries lazily."""

    def __init__(
        self,
        builtins: Iterable[tuple[str, str]] = BUILTINS,
        entry_points: Callable[[], list[EntryPoint]] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._discover = entry_points or discover_entry_points
        self._external_loaded = False
        self._sources: dict[str, str] = {}
        self.failures: list[PluginInfo] = []
        self._backends: BackendRegistry | None = None
        self._roles: RoleRegistry | None = None
        self._trace = bool(os.environ.get("ORCH_PLUGINS_TRACE"))
        blocked = _names("ORCH_PLUGINS_BLOCK")
        for short, module in builtins:
            if short not in blocked:
                self.register(importlib.import_module(module), short, "built-in " + module)

    def register(self, plugin: object, name: str, source: str) -> None:
        """Register one plugin; on a bad hook (misspelt name, wrong signature) undo and raise."""
        try:
            # A wrong signature raises inside pm.register, after pluggy has already recorded the
            # plugin and its earlier hooks: undo that too, not only a check_pending failure.
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            if self.pm.get_plugin(name) is plugin:
                self.pm.unregister(plugin)
            raise
        self._sources[name] = source
        self._backends = self._roles = None

    def load_external(self) -> None:
        """Load every allowed third-party plugin once; report and skip broken ones."""
        if self._external_loaded:
            return
        self._external_loaded = True
        allow, blocked = _names("ORCH_PLUGINS_ALLOW"), _names("ORCH_PLUGINS_BLOCK")
        for ep in self._discover():
            if ep.name in blocked or (allow and ep.name not in allow):
                continue
            dist = getattr(getattr(ep, "dist", None), "name", None)
            source = f"entry point {ep.value}" + (f" ({dist})" if dist else "")
            try:
                if self.pm.has_plugin(ep.name):  # a clash is reported, never silently dropped
                    owner = self._sources.get(ep.name, ep.name)
                    raise OrchError(f"plugin name {ep.name!r} is already taken by {owner}")
                self.register(ep.load(), ep.name, source)
            except Exception as exc:  # one broken plugin must not take the tool down
                log.warning("Failed to load plugin %s=%s: %s", ep.name, ep.value, exc)
                self.failures.append(PluginInfo(ep.name, source, error=str(exc)))

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """A hook's implementations in pluggy's call order (last registered first)."""
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    def _call(self, impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, object]) -> None:
        """Call one implementation on its own: pluggy's own call stops at the first exception,
        here a failing plugin is logged and the others still run. ``OrchError`` (a duplicate
        name) is the one error that propagates."""
        if self._trace:
            sys.stderr.write(f"orch-trace: {hook_name} [{impl.plugin_name}]\n")
        if impl.hookwrapper or impl.wrapper:  # called as a plain function it would never run
            log.warning("plugin %s: wrappers of %s are not supported", impl.plugin_name, hook_name)
            return
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except OrchError:
            raise
        except Exception as exc:
            log.warning("plugin %s failed in %s: %s", impl.plugin_name, hook_name, exc)

    def _collect(self, hook_name: str, registry: R) -> R:
        for impl in self._impls(hook_name):
            registry.current_owner = self._sources.get(impl.plugin_name, impl.plugin_name)
            self._call(impl, hook_name, {"registry": registry})
        return registry

    # -- typed facade -----------------------------------------------------------------------

    def backends(self) -> BackendRegistry:
        if self._backends is None:
            self._backends = self._collect("orch_register_backends", BackendRegistry())
        return self._backends

    def roles(self) -> RoleRegistry:
        if self._roles is None:
            self._roles = self._collect("orch_register_roles", RoleRegistry())
        return self._roles

    def backend_class(self, name: str) -> type[Backend]:
        cls = self.backends().get(name)
        if cls is None and not self._external_loaded:
            self.load_external()
            cls = self.backends().get(name)
        if cls is None:
            known = ", ".join(self.backends().names()) or "none"
            raise OrchError(f"unknown backend {name!r} (known: {known})")
        return cls

    def backend(self, name: str, context: BackendContext) -> Backend:
        """Backend ``name`` (see :meth:`backend_class`), made with ``context``."""
        return self.backend_class(name)(context)

    def role(self, name: str) -> Role:
        role = self.roles().get(name)
        if role is None and not self._external_loaded:
            self.load_external()
            role = self.roles().get(name)
        if role is None:
            raise OrchError(f"unknown role {name!r} (see 'orch roles')")
        return role

    def launch_options(self) -> list[tuple[str, LaunchOption]]:
        """Every backend's declared launch options as ``(backend name, option)``, backends by
        name (third-party plugins loaded: their flags belong on ``orch launch`` too)."""
        self.load_external()
        registry = self.backends()
        return [(name, o) for name in registry.names() for o in registry[name].options]

    def commands(self, make_app: Callable[[], App]) -> list[tuple[str, App]]:
        """Call ``orch_register_commands`` once per plugin, each with a fresh ``make_app()``;
        returns ``(owner, app)`` per plugin, in registration order, for the CLI to merge (it
        knows the apps' type; this module never imports typer)."""
        self.load_external()
        out = []
        for impl in reversed(self._impls("orch_register_commands")):
            app = make_app()
            self._call(impl, "orch_register_commands", {"app": app})
            out.append((self._sources.get(impl.plugin_name, impl.plugin_name), app))
        return out

    def role_summaries(self) -> list[dict[str, Any]]:
        """Every role, as ``orch roles --json`` lists them: ``{name, description, source,
        allowed_tools, disallowed_tools, model, permission_mode}`` (by name)."""
        _, registry = self.everything()
        rows: list[dict[str, Any]] = []
        for name in registry.names():
            role = registry.get(name)
            assert role is not None
            rows.append(
                {
                    "name": name,
                    "description": role.description,
                    "source": role.source or registry.owner(name),
                    "allowed_tools": list(role.allowed_tools),
                    "disallowed_tools": list(role.disallowed_tools),
                    "model": role.model,
                    "permission_mode": role.permission_mode,
                }
            )
        return rows

    def everything(self) -> tuple[BackendRegistry, RoleRegistry]:
        self.load_external()
        return self.backends(), self.roles()

    def plugin_infos(self) -> list[PluginInfo]:
        self.load_external()
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            infos.append(PluginInfo(name, self._sources.get(name, "?"), hooks))
        return infos + self.failures

    def listens(self, hook_name: str) -> bool:
        """Whether a plugin (third-party ones included: scans entry points once per process)
        implements the event hook ``hook_name``; True when that cannot be told."""
        try:
            self.load_external()
            return bool(self._impls(hook_name))
        except Exception:
            return True

    def notify(self, hook_name: str, **kwargs: object) -> None:
        """Fire an event hook; a failing plugin is logged, never allowed to break the caller.

        Scans entry points (once per process): a plugin may implement only event hooks.
        """
        try:
            self.load_external()
            for impl in self._impls(hook_name):
                self._call(impl, hook_name, kwargs)
        except Exception as exc:
            log.warning("a plugin failed in %s: %s", hook_name, exc)


_current: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager (tests build their own ``Plugins``)."""
    global _current
    if _current is None:
        _current = Plugins()
    return _current


def set_plugins(plugins: Plugins | None) -> None:
    global _current
    _current = plugins
