"""Launch options that backends declare, on ``orch launch`` and ``orch parallel``.

A backend lists its options (:class:`orch_plugins.backend.LaunchOption`); this module knows no
backend by name. Every option can be given as ``-o KEY=VALUE``; one with a ``flag`` also gets
that flag (``--host HOST``), shown in ``--help`` right after ``-o``. The flags are looked up
only when a command that takes them is parsed or its help is shown (loading the backends costs
more than ``orch status`` should pay). The backend the run goes to checks and converts the
values (:meth:`orch_plugins.backend.Backend.check_options`) before anything is recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from orch_plugins.errors import OrchError

if TYPE_CHECKING:
    from typer import _click as click

    from orch_plugins.backend import LaunchOption

#: Where the declared flags' values wait (``click.Context.meta``): ``[(backend, option, value)]``.
META_KEY = "orch.backend_flags"

OPTION_OPT = typer.Option(
    None,
    "--option",
    "-o",
    metavar="KEY=VALUE",
    help="Backend option (repeatable; see 'orch backends --options').",
)


def _declared_flags() -> list[click.Parameter]:
    """One click option per declared flag; two backends declaring one flag fail loudly."""
    from typer.core import TyperOption

    from orch_plugins.plugins import get_plugins

    params: list[click.Parameter] = []
    owners: dict[str, str] = {}
    for i, (backend, option) in enumerate(get_plugins().launch_options()):
        flag = option.flag
        if not flag:
            continue
        if flag in owners:
            raise OrchError(
                f"launch flag {flag} is declared twice: by backend {owners[flag]!r} and by "
                f"backend {backend!r}"
            )
        owners[flag] = backend
        is_bool = option.type is bool
        params.append(
            TyperOption(
                param_decls=[f"backend_flag_{i}", flag],
                type=None if is_bool else option.type,
                is_flag=is_bool,
                default=False if is_bool else None,
                metavar=option.metavar,
                help=option.help,
                expose_value=False,
                callback=_keeper(backend, option),
            )
        )
    return params


def _keeper(backend: str, option: LaunchOption) -> Any:
    def keep(ctx: click.Context, _param: click.Parameter, value: object) -> object:
        if value is not None and value is not False:
            ctx.meta.setdefault(META_KEY, []).append((backend, option, value))
        return value

    return keep


class WithBackendFlags(TyperCommand):
    """A command that also takes the flags backends declare, placed after ``-o``."""

    _flags: list[click.Parameter] | None = None

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if self._flags is None:
            self._flags = _declared_flags()
        at = next((i + 1 for i, p in enumerate(params) if p.name == "option"), len(params))
        taken = {opt for p in params for opt in p.opts}
        clash = [f for p in self._flags for f in p.opts if f in taken]
        if clash:
            raise OrchError(f"a backend declares launch flag {clash[0]}, which orch itself has")
        return [*params[:at], *self._flags, *params[at:]]


def backend_and_options(
    ctx: click.Context, backend: str | None, pairs: list[str] | None
) -> tuple[str | None, dict[str, object]]:
    """The backend (``--backend``, else the one a given flag selects) and the raw launch
    options from ``-o KEY=VALUE`` and the declared flags; ``OrchError`` for a malformed or
    repeated option, or flags that select two different backends."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise OrchError(f"-o takes KEY=VALUE, not {pair!r}")
        _put(options, key.strip(), value)
    selected: dict[str, str] = {}
    for owner, option, value in ctx.meta.get(META_KEY, []):
        _put(options, option.key, value)
        if option.selects_backend:
            selected[option.flag] = owner
    if backend is None and len(set(selected.values())) > 1:
        which = " and ".join(f"{flag} selects backend {b!r}" for flag, b in selected.items())
        raise OrchError(f"{which}: pass --backend, or only one of them")
    if backend is None and selected:
        backend = next(iter(selected.values()))
    return backend, options


def _put(options: dict[str, object], key: str, value: object) -> None:
    if key in options:
        raise OrchError(f"launch option {key!r} is given twice")
    options[key] = value
