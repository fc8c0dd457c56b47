"""ASGI entry point: HTTP (pixel fast path, then Django) and websockets (Channels)."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from viewer.routing import websocket_urlpatterns  # noqa: E402
from viewer.tiles.asgi import TileFastPath  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": TileFastPath(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
