"""The template options of the command line (and of --config and
SVCWRAP_*): --template, --reload, --template-wait, --watch-floor,
--template-timeout -> spec.TemplatesConfig. Called by cli.parse() only
when a template is configured.
"""
from __future__ import annotations

from svcwrap.templates.spec import (
    TemplateError, TemplatesConfig, TemplateSpec, parse_reload, parse_template_flag,
    parse_wait,
)

DEFAULT_FLOOR = 0.25


def parse_templates(src, from_file: list[TemplateSpec]) -> TemplatesConfig:
    """src: cli's option source (value, values, where, duration)."""
    from svcwrap.cli import UsageError

    def checked(flag: str, parse, raw: str):
        try:
            return parse(raw)
        except TemplateError as err:
            raise UsageError(f"{src.where(flag)}: {err}") from None

    templates = [checked("--template", parse_template_flag, raw)
                 for raw in src.values("--template")] + list(from_file)
    raw_reload = src.value("--reload")
    reload = checked("--reload", parse_reload, raw_reload) if raw_reload else parse_reload("none")
    raw_wait = src.value("--template-wait")
    wait = checked("--template-wait", parse_wait, raw_wait) if raw_wait else (0.0, 0.0)
    seen: dict[str, str] = {}
    for spec in templates:
        if spec.destination in seen:
            raise UsageError(f"{spec.origin}: {spec.destination} is also the destination of "
                             f"{seen[spec.destination]}")
        seen[spec.destination] = spec.origin
    return TemplatesConfig(templates, reload, wait,
                           floor=src.duration("--watch-floor", DEFAULT_FLOOR),
                           timeout=src.duration("--template-timeout", 0.0))
