"""The HTTP edge: the aiohttp application, the JSON API (api/), the portal pages (pages/),
health and metrics. Handlers parse, call one service function and render."""
