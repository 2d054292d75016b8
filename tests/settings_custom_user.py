"""The test settings with a swapped user model (UUID key, email login, a phone field)."""

from tests.settings import *  # noqa: F403
from tests.settings import FYNO

AUTH_USER_MODEL = "testapp.EmailUser"

FYNO = {**FYNO, "PHONE_ATTRIBUTE": "phone"}
