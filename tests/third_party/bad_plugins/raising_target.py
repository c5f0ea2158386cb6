"""A deploy target that fails inside: the error must name this plugin."""

import mnistp4


def explode(ctx, request):
    raise RuntimeError("the card is write-protected")


@mnistp4.hookimpl
def register_deploy_targets(register):
    register("exploding", explode)
