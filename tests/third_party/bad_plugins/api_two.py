"""Written for a plugin API this mnistp4 does not provide."""

import mnistp4

MNISTP4_PLUGIN_API = "2.0"


@mnistp4.hookimpl
def register_weightings(register):
    register("from-the-future", lambda n_mnist, n_custom, factor, generator: None)
