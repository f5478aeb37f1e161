"""The aiohttp application: configuration, database, case workflow, auth, API, portal pages, CLI."""
