"""Portal pages (placeholder until the portal is written)."""
from aiohttp import web


def render_error(request, exc):
    return web.Response(status=exc.status, text=exc.message)


def setup(app: web.Application) -> None:
    pass
