"""Replaces the shipped ``models`` command, saying so with ``override=True``."""

import click

import mnistp4


@mnistp4.hookimpl
def register_commands(cli):
    @cli.command("models", override=True, help="the models, one name a line")
    @mnistp4.pass_context
    def models(ctx):
        for name in ctx.registry.names("models"):
            click.echo(name)
