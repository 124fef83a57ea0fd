"""The project config applied to a command: its values for the options the command line left unset.

A flag, or the environment variable of its option, overrides the project config; the config overrides the
built-in defaults (docs/config.md). What was applied, and what a flag overrode, is kept for `--dry-run`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from runner.cli.common import handle_errors
from runner.errors import Problem, ScenarioError
from runner.scenario.project import Project, Setting, discover

PARAMETERS: dict[str, tuple[str, ...]] = {
    "paths": ("scenarios", "paths"),
    "pipeline_file": ("pipeline_file",),
    "database_url_env": ("database_url",),
    "parallel": ("parallel",),
    "tags": ("tags",),
    "skip_tags": ("skip_tags",),
    "junit": ("junit_path",),
    "json": ("json_path",),
    "html": ("html_path",),
}
"""Each key of the project config, and the parameter it gives a default to (the first a command has)."""
PATHS = ("scenarios", "paths")
UNSET = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


@dataclass(frozen=True, slots=True)
class Applied:
    """The project config as one command applied it."""

    project: Project = Project()
    overridden: tuple[tuple[str, str], ...] = ()
    """(key, what overrode it: the flag and its value, or the environment variable)."""
    pipeline_by: str = "named by --pipeline-file"
    pipeline_file: Path | None = None

    @property
    def folders(self):  # type: ignore[no-untyped-def]
        """The folders whose scenarios the project config gives a definition of their own."""
        return self.project.folders

    def lines(self) -> list[str]:
        """The project config in force, for `--dry-run`: every value, what overrode it, the definitions."""
        if self.project.file is None:
            return []
        overridden = dict(self.overridden)
        out = [f"project config: {self.project.display}"]
        for setting in self.project.settings:
            out.append(f"  {setting.key}: {_shown(setting)}"
                       + (f" (overridden by {overridden[setting.key]})" if setting.key in overridden else
                          " (set)" if setting.key == "database_url_env" else ""))
        which = "the built-in one" if self.pipeline_file is None else f"{self.pipeline_file} ({self.pipeline_by})"
        out.append(f"  pipeline definition: {which}, for scenarios that name none")
        out += [f"  pipeline definition: {f.definition} for {f.path} ({f.at})" for f in self.project.folders]
        return out


def project_config(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--config FILE`; the command gets, for each option left unset, the project config's value, and `project=`
    (what was applied)."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        ctx = click.get_current_context()
        applied = handle_errors(apply)(ctx, kwargs.pop("config"), kwargs)
        _require_paths(ctx, kwargs)
        return command(**kwargs, project=applied)

    return click.option(
        "--config", "config", envvar="YE_CONFIG", metavar="FILE",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The project config (docs/config.md; env YE_CONFIG). Default: ye-run.toml, or pyproject.toml with "
             "[tool.ye-run], the nearest from the working directory up. Flags override its values.")(wrapper)


def apply(ctx: click.Context, given: Path | None, kwargs: dict[str, Any]) -> Applied:
    """Fill `kwargs` from the project config where the command line left them unset; what was applied."""
    project = discover(given=given)
    overridden = []
    for key, names in PARAMETERS.items():
        setting, name = project.get(key), next((n for n in names if n in kwargs), None)
        if setting is None or name is None:
            continue
        if ctx.get_parameter_source(name) in UNSET and not (name in PATHS and kwargs[name]):
            kwargs[name] = _value(setting)
        else:
            overridden.append((key, _overrider(ctx, name, kwargs[name])))
    return Applied(project, tuple(overridden), _pipeline_by(ctx, project, kwargs),
                   kwargs.get("pipeline_file"))


def _value(setting: Setting) -> Any:
    """A setting as its option's value: paths as Path, the database as the URL its variable holds."""
    if setting.key == "database_url_env":
        url = os.environ.get(setting.value)
        if not url:
            raise ScenarioError([Problem(setting.file, setting.line, 1, setting.key, f"the environment variable "
                                         f"{setting.value} is not set; set it, or give --database-url")])
        return url
    if setting.key in ("pipeline_file", "junit", "json", "html"):
        return Path(setting.value)
    return setting.value


def _overrider(ctx: click.Context, name: str, value: Any) -> str:
    """The flag (with the value it gave) or the environment variable that overrode a setting."""
    param = next(p for p in ctx.command.params if p.name == name)
    if ctx.get_parameter_source(name) == ParameterSource.ENVIRONMENT:
        return str(param.envvar)
    flag = "/".join(param.opts) if isinstance(param, click.Option) else param.human_readable_name
    if name == "database_url":
        return flag
    shown = ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return f"{flag}: {shown}"


def _pipeline_by(ctx: click.Context, project: Project, kwargs: dict[str, Any]) -> str:
    """What named the run's definition: the flag, its environment variable, or the project config."""
    source = ctx.get_parameter_source("pipeline_file") if "pipeline_file" in kwargs else None
    setting = project.get("pipeline_file")
    if source == ParameterSource.ENVIRONMENT:
        return "named by YE_PIPELINE_FILE"
    if source in UNSET and setting is not None:
        return f"named by {setting.at}"
    return "named by --pipeline-file"


def _require_paths(ctx: click.Context, kwargs: dict[str, Any]) -> None:
    """SCENARIO... (or PATH...) from the command line or the config's `paths`: one of them is needed."""
    for name in PATHS:
        if name in kwargs and not kwargs[name]:
            metavar = next(p for p in ctx.command.params if p.name == name).human_readable_name
            raise click.UsageError(f"Missing argument '{metavar}': give {metavar} or `paths` in the project config "
                                   "(docs/config.md)", ctx)


def _shown(setting: Setting) -> str:
    return ", ".join(setting.value) if isinstance(setting.value, tuple) else str(setting.value)
