"""A hook implementation whose name is no hook: ``register_modles``."""

import mnistp4


@mnistp4.hookimpl
def register_modles(register):
    pass
