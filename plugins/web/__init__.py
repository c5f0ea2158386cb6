"""Web stage: ``mnistp4 serve`` — the tablet collection page and the label review page."""
