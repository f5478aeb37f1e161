"""The `mediation` command line.

One module (~450 lines): every command's argument parsing and output in one place, each command a small function over the system (server/system.py)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from server.core.config import Settings
from server.infra.db import downgrade, upgrade
from server.system import build
from server.core.errors import AppError


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

    au = sub.add_parser("audit", help="the hash-chained audit log").add_subparsers(dest="audit_cmd", required=True)
    av = au.add_parser("verify", help="recheck the audit chain, evidence hashes and every registered check "
                                      "(exit 1 and a list of what does not match when anything was altered)")
    av.add_argument("--case", metavar="CASE_NUMBER", help="only this case (its entries, links and files)")
    av.add_argument("--json", action="store_true", help="print the report as JSON")

    cs = sub.add_parser("cases", help="case archive").add_subparsers(dest="cases_cmd", required=True)
    ce = cs.add_parser("export", help="one zip with manifest, files, hashes, audit entries and chat transcripts")
    ce.add_argument("number", metavar="CASE_NUMBER")
    ce.add_argument("--out", metavar="FILE", help="where to write the zip (default: ./CASE_NUMBER.zip)")
    ag = sub.add_parser("agreements", help="signed settlement agreements").add_subparsers(dest="ag_cmd", required=True)
    agv = ag.add_parser("verify", help="check a PDF's PAdES seal and whether it is exactly the agreement on record "
                                       "(exit 1 when not)")
    agv.add_argument("file", metavar="FILE")
    agv.add_argument("--json", action="store_true", help="print the report as JSON")

    ct = sub.add_parser("court", help="court hand-off").add_subparsers(dest="court_cmd", required=True)
    cd = ct.add_parser("deliver", help="deliver the court outbox (the server does this by itself; for operators)")
    cd.add_argument("--once", action="store_true", help="one round, then exit")

    nd = sub.add_parser("nodes", help="the nodes of this deployment and the rooms each hosts (needs REDIS_URL)")
    nd.add_argument("--json", action="store_true", help="print the registry as JSON")

    rc = sub.add_parser("recordings", help="session recordings").add_subparsers(dest="rec_cmd", required=True)
    rv = rc.add_parser("verify", help="recheck every file's SHA-256 and the signed manifests (exit 1 when altered)")
    rv.add_argument("session_id", type=int, metavar="SESSION_ID")
    rcp = rc.add_parser("compose", help="render one grid video of a recorded session (offline)")
    rcp.add_argument("session_id", type=int, metavar="SESSION_ID")
    rcp.add_argument("--out", metavar="FILE", help="output .mp4/.mkv/.webm (default: ./session-ID.mp4)")
    rcp.add_argument("--run", metavar="RUN", help="which recording run (default: the latest)")
    rr = rc.add_parser("recover", help="finalise and attach the unfinished recordings of a node that died "
                                       "(ONLY for a node that is down: its files are rewritten in place)",
                       description="Finalise (remux, sign an 'interrupted' manifest) and attach to their sessions "
                                   "the recordings a server node left unfinished. WARNING: use it only for a node "
                                   "that is down; recovering the runs of a live node corrupts what it is writing. "
                                   "A node recovers its own runs by itself when it starts again.")
    who = rr.add_mutually_exclusive_group()
    who.add_argument("--node", metavar="NODE_ID", help="the dead node's id (default: this node's NODE_ID)")
    who.add_argument("--all", action="store_true", help="every node's unfinished runs, and runs with no owner "
                                                        "record (only when every node is down)")
    return p


def _progress_bar(fraction: float, width: int = 40) -> None:
    done = int(width * max(0.0, min(1.0, fraction)))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {fraction * 100:5.1f}%")
    sys.stderr.flush()
    if fraction >= 1.0:
        sys.stderr.write("\n")


async def _recordings_recover(settings: Settings, args) -> int:
    from server.services import recordings as rec_svc

    node = None if args.all else (settings.node_id if args.node is None else args.node.strip())
    if node == "":
        print("error: --node needs a node id", file=sys.stderr)
        return 2
    await upgrade(settings.database_url)
    system = build(settings)
    db = system.db
    try:
        result = await rec_svc.recover_runs(db, settings, node=node)
    finally:
        await system.close()
    scope = "any node" if node is None else f"node {node}"
    for r in result.recovered:
        print(f"recovered {r.run_key}: session {r.session_id}, {r.files} file(s), {r.status}"
              + (f" (node {r.owner})" if node is None else ""))
    for run_key, why in result.failed:
        print(f"error: {run_key}: {why}", file=sys.stderr)
    if not result.recovered and not result.failed:
        print(f"nothing to do: no unfinished recordings of {scope}")
    return 1 if result.failed else 0


async def _recordings(settings: Settings, args) -> int:
    from recordings.compose import compose
    from server.services import recordings as rec_svc

    if args.rec_cmd == "recover":
        return await _recordings_recover(settings, args)

    await upgrade(settings.database_url)
    system = build(settings)
    db = system.db
    try:
        async with db.read() as s:
            runs = await rec_svc.runs_of(s, args.session_id)
            if args.rec_cmd == "verify":
                problems = await rec_svc.verify_session(s, settings, args.session_id)
    finally:
        await system.close()
    if not runs:
        print(f"error: session {args.session_id} has no recordings", file=sys.stderr)
        return 2
    if args.rec_cmd == "verify":
        files = sum(len(f) for _, f in runs)
        if problems:
            print(f"{len(problems)} problem(s) in {len(runs)} run(s), {files} file(s):")
            for p in problems:
                print(f"  - {p}")
            return 1
        print(f"ok: {len(runs)} run(s), {files} file(s); every hash and manifest signature matches")
        return 0
    run = next((r for r, _ in runs if r.run_key == args.run), None) if args.run else runs[-1][0]
    if run is None:
        print(f"error: no run {args.run} in session {args.session_id}", file=sys.stderr)
        return 2
    out = args.out or f"session-{args.session_id}.mp4"
    result = await asyncio.to_thread(compose, rec_svc.store_for(settings), run.run_key, out, _progress_bar)
    print(f"{result.path}: {result.duration:.1f} s, {result.width}x{result.height}, "
          f"{len(result.participants)} participant(s)")
    return 0


async def _agreements_verify(settings: Settings, args) -> int:
    import hashlib
    import json
    from pathlib import Path

    from server.infra import pdf
    from server.infra.certs import load_identity
    from server.services.outcome import agreements as agr

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(data).hexdigest()
    check = await pdf.verify(data, load_identity(settings.data_dir).trust_roots)
    from sqlalchemy.exc import SQLAlchemyError
    system = build(settings)
    db = system.db
    try:
        async with db.read() as s:
            try:
                found = await agr.find_by_pdf_hash(s, digest)
            except SQLAlchemyError as exc:
                print(f"error: cannot read the case records ({type(exc).__name__}); is DATABASE_URL right and the "
                      "database migrated (mediation db upgrade)?", file=sys.stderr)
                return 2
            record = None if found is None else {"case_number": found[1].number, "case_id": found[1].id,
                                                 "agreement_id": found[0].id,
                                                 "effective_at": found[0].effective_at.isoformat()}
    finally:
        await system.close()
    ok = check.ok and record is not None
    if args.json:
        print(json.dumps({"ok": ok, "file": args.file, "sha256": digest, "signature": check.to_json(),
                          "record": record}, ensure_ascii=False, indent=2))
    else:
        print(f"file     {args.file}")
        print(f"sha256   {digest}")
        for sg in check.signatures:
            print(f"seal     {'valid' if sg.ok else 'INVALID'}: {sg.signer}"
                  + (f", signed {sg.signing_time}" if sg.signing_time else "")
                  + (f", timestamp {sg.timestamp}" if sg.timestamp else ""))
        if not check.ok:
            print(f"FAIL     signature: {check.error}")
        if record:
            print(f"record   matches the signed agreement of case {record['case_number']}")
        else:
            claimed = check.keyword("case")
            print("FAIL     record: no case has this file as its signed agreement"
                  + (f" (the file claims case {claimed})" if claimed else ""))
        print("OK" if ok else "NOT VALID")
    return 0 if ok else 1


async def _court_deliver(settings: Settings, args) -> int:
    system = build(settings)
    worker = system.outcome.worker
    try:
        if args.once:
            n = await worker.run_once()
            print(f"delivered {n}")
            return 0
        worker.start()
        await asyncio.Event().wait()
    finally:
        await system.close()
    return 0


async def _audit_verify(settings: Settings, args) -> int:
    import json

    from server.services.archive import records as archive
    from server.services.cases import get_case_by_number

    system = build(settings)
    db = system.db
    try:
        async with db.read() as s:
            case = None
            if args.case:
                case = await get_case_by_number(s, args.case)
                if case is None:
                    print(f"error: no case {args.case}", file=sys.stderr)
                    return 2
            say = None if args.json else (lambda text: print(f"  … {text}", file=sys.stderr, flush=True))
            report = await archive.run_checks(s, system.evidence, case=case, settings=settings,
                                              progress=say)
    finally:
        await system.close()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        scope = f"case {report.case_number}" if case else "whole archive"
        for r in report.results:
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.name:<12} {r.checked} checked"
                  + (f", {len(r.problems)} not matching" if r.problems else ""))
            for p in r.problems:
                line = f"       {p.item}: {p.problem} - {p.detail}"
                if p.expected or p.actual:
                    line += f" (expected {p.expected}, found {p.actual})"
                print(line)
        print(f"{scope}: " + ("all intact" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


async def _cases_export(settings: Settings, args) -> int:
    import shutil
    from pathlib import Path

    from server.services.archive import records as archive

    out = Path(args.out or f"{args.number.strip().upper()}.zip").resolve()
    system = build(settings)
    db = system.db
    last = [-1]

    def progress(done: int, total: int, name: str) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct != last[0]:
            last[0] = pct
            bar = "#" * (pct // 5)
            print(f"\r[{bar:<20}] {pct:3d}%  {name[:50]:<50}", end="", file=sys.stderr, flush=True)

    try:
        path, digest, bundle = await archive.export_case(db, None, args.number.strip().upper(),
                                                         system.evidence, settings=settings,
                                                         progress=progress, generated_by="mediation cases export")
    finally:
        await system.close()
    print(file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), out)
    shutil.rmtree(path.parent, ignore_errors=True)
    print(f"{out}")
    print(f"sha256 {digest}  files {len(bundle.manifest['files'])}")
    return 0


async def _add(settings: Settings, kind: str, args) -> int:
    from server.core.schemas import ExpertIn, InstitutionIn, UserIn, parse
    from server.services import directory

    await upgrade(settings.database_url)
    system = build(settings)
    db = system.db
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
        await system.close()


async def _nodes(settings: Settings, args) -> int:
    import json

    import redis.exceptions

    from signaling.cluster import registry_view
    if not settings.redis_url:
        raise AppError("REDIS_URL is not set: this is a single node, with its rooms in its own memory.",
                       code="no_cluster")
    try:
        view = await registry_view(settings)
    except (OSError, redis.exceptions.RedisError) as exc:
        raise AppError(f"cannot reach Redis at REDIS_URL: {exc}", code="redis_unreachable") from None
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
        return 0
    print(f"{'node':<20} {'url':<36} {'rooms':>5} {'people':>6} {'streams':>7} {'cpu':>5}  state")
    for n in view["nodes"]:
        state = "draining" if n.get("draining") else ("full" if n.get("full") else "ok")
        print(f"{n['id']:<20} {n['url']:<36} {n['rooms']:>5} {n['participants']:>6} {n['streams']:>7} "
              f"{n['cpu']:>5.2f}  {state}")
    if not view["nodes"]:
        print("(no live node)")
    print()
    for room in view["rooms"]:
        who = ", ".join(f"{p['name']} ({p['role']}, {p['area']})" for p in room["participants"]) or "-"
        dead = "" if room["node_alive"] else "  [node down: moves on the next join]"
        print(f"room {room['room']}  session {room['session_id']}  on {room['node'] or '-'}{dead}: {who}")
    return 0


async def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    from aiohttp import web

    from server.http.app import create_app
    from server.services.demo import seed

    await upgrade(settings.database_url)
    app = create_app(settings)
    if demo:
        lines = await seed(app["db"], app["system"].evidence)
        if lines:
            print("Demo data created. Logins:")
            print("\n".join(lines))
        else:
            print("Database already has data; demo seeding skipped.")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"Serving on http://{host}:{port}/  (database: {settings.database_url.split('@')[-1]})", flush=True)
    # SIGTERM (an orchestrator stopping the node) shuts down cleanly: with several nodes the
    # rooms are handed over to the others and this node's recordings are finished.
    import signal
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.from_env()
    try:
        if args.cmd == "serve":
            import os
            import socket
            if not os.environ.get("NODE_ID"):
                settings.node_id = f"{socket.gethostname()}-{args.port}"
            if not os.environ.get("NODE_URL") and not os.environ.get("PUBLIC_URL"):
                host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
                settings.node_url = settings.public_url = f"http://{host}:{args.port}"
            from signaling.cluster import StartError
            try:
                asyncio.run(_serve(settings, args.host, args.port, args.demo))
            except KeyboardInterrupt:
                pass
            except StartError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.cmd == "db":
            if args.db_cmd == "upgrade":
                asyncio.run(upgrade(settings.database_url))
            else:
                asyncio.run(downgrade(settings.database_url, args.revision))
            print("ok")
            return 0
        if args.cmd == "agreements":
            return asyncio.run(_agreements_verify(settings, args))
        if args.cmd == "court":
            try:
                return asyncio.run(_court_deliver(settings, args))
            except KeyboardInterrupt:
                return 0
        if args.cmd == "nodes":
            return asyncio.run(_nodes(settings, args))
        if args.cmd == "recordings":
            return asyncio.run(_recordings(settings, args))
        if args.cmd == "audit":
            return asyncio.run(_audit_verify(settings, args))
        if args.cmd == "cases":
            return asyncio.run(_cases_export(settings, args))
        kind = {"users": "user", "institutions": "institution", "experts": "expert"}[args.cmd]
        return asyncio.run(_add(settings, kind, args))
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for field, msg in exc.fields.items():
            print(f"  {field}: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
