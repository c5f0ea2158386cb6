"""A command named like the shipped ``train``, without ``override=True``."""

import mnistp4


@mnistp4.hookimpl
def register_commands(cli):
    @cli.command("train")
    def train():
        pass
