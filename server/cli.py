"""The `mediation` command line."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .config import Settings
from .db import Database, downgrade, upgrade
from .errors import AppError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mediation", description="Online dispute mediation server")
    sub = p.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the server (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--demo", action="store_true", help="seed demo data into an empty database")

    dbp = sub.add_parser("db", help="database migrations")
    dbsub = dbp.add_subparsers(dest="db_cmd", required=True)
    dbsub.add_parser("upgrade", help="apply all migrations")
    down = dbsub.add_parser("downgrade", help="revert migrations")
    down.add_argument("revision", nargs="?", default="-1")

    users = sub.add_parser("users", help="staff accounts").add_subparsers(dest="users_cmd", required=True)
    ua = users.add_parser("add")
    ua.add_argument("--username", required=True)
    ua.add_argument("--password", required=True)
    ua.add_argument("--role", required=True, choices=["admin", "intake", "mediator", "clerk"])
    ua.add_argument("--institution", type=int)
    ua.add_argument("--name", default="")

    inst = sub.add_parser("institutions", help="mediation institutions").add_subparsers(dest="inst_cmd", required=True)
    ia = inst.add_parser("add")
    ia.add_argument("--name", required=True)
    ia.add_argument("--kind", default="people")
    ia.add_argument("--area", default="")
    ia.add_argument("--prefix", help="case-number letters, e.g. TJ (derived from the name if omitted)")

    ex = sub.add_parser("experts", help="the expert pool").add_subparsers(dest="ex_cmd", required=True)
    ea = ex.add_parser("add")
    ea.add_argument("--name", required=True)
    ea.add_argument("--specialty", required=True)
    ea.add_argument("--level", default="county", choices=["county", "town"])
    ea.add_argument("--organisation", default="")
    return p


async def _add(settings: Settings, kind: str, args) -> int:
    from .schemas import ExpertIn, InstitutionIn, UserIn, parse
    from .services import directory

    await upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            if kind == "user":
                data = parse(UserIn, {"username": args.username, "password": args.password, "role": args.role,
                                      "institution_id": args.institution, "name": args.name})
                obj = await directory.add_user(s, None, data)
            elif kind == "institution":
                body = {"name": args.name, "kind": args.kind, "area": args.area}
                if args.prefix:
                    body["prefix"] = args.prefix
                obj = await directory.add_institution(s, None, parse(InstitutionIn, body))
            else:
                obj = await directory.add_expert(s, None, parse(ExpertIn, {
                    "name": args.name, "specialty": args.specialty, "level": args.level,
                    "organisation": args.organisation}))
        print(obj.id)
        return 0
    finally:
        await db.dispose()


async def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    from aiohttp import web

    from .app import create_app
    from .demo import seed
    from .storage import FileStore

    await upgrade(settings.database_url)
    app = create_app(settings)
    if demo:
        lines = await seed(app["db"], FileStore(settings.evidence_dir))
        if lines:
            print("Demo data created. Logins:")
            print("\n".join(lines))
        else:
            print("Database already has data; demo seeding skipped.")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"Serving on http://{host}:{port}/  (database: {settings.database_url.split('@')[-1]})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.from_env()
    try:
        if args.cmd == "serve":
            try:
                asyncio.run(_serve(settings, args.host, args.port, args.demo))
            except KeyboardInterrupt:
                pass
            return 0
        if args.cmd == "db":
            if args.db_cmd == "upgrade":
                asyncio.run(upgrade(settings.database_url))
            else:
                asyncio.run(downgrade(settings.database_url, args.revision))
            print("ok")
            return 0
        kind = {"users": "user", "institutions": "institution", "experts": "expert"}[args.cmd]
        return asyncio.run(_add(settings, kind, args))
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for field, msg in exc.fields.items():
            print(f"  {field}: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
