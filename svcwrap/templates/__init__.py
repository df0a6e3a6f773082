"""Templates rendered from Consul into files (issue 11): the consul-template
half of the seed's system, inside the init.

    spec.py         what one template is (TemplateSpec) and the reload actions
    config_file.py  --config FILE (TOML): options and [[template]] tables
    queries.py      the Consul queries a template can make, and their answers
    watch.py        one blocking-query loop per distinct query
    render.py       the sandboxed Jinja2 environment and its functions
    quiescence.py   consul-template's wait MIN:MAX
    writer.py       atomic writes, permissions, backup, validate and roll back
    actions.py      exec:CMD, run with bounded output
    manager.py      ties it together for the supervisor side

Nothing here is imported unless a template is configured: Jinja2 and the
threads cost start-up time a plain init must not pay.
"""
