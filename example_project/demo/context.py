from django.conf import settings


def fyno_target(request):
    """Which Fyno the demo talks to, for the page footer."""
    return {"fyno_target": "the bundled Fyno emulator" if settings.USES_EMULATOR else "Fyno"}
