"""The admins' pages: institutions (/admin/institutions), staff accounts (/admin/users) and the
expert pool (/admin/experts, which mediators and intake officers may also read).
"""
from __future__ import annotations

from aiohttp import web

from server.core import serialize as ser
from server.core.errors import Conflict, ValidationFailed
from server.core.policy import require_staff
from server.core.schemas import CATEGORIES, EXPERT_LEVELS, INSTITUTION_KINDS, ROLES, ExpertIn, InstitutionIn, UserIn, UserPatch
from server.services import directory
from server.http.util import read_form
from server.http.pages.common import (
    FormInvalid, _clean, _db, _opt_int, _path_id, _put, _read, check, redirect, render, service_fields,
)


async def _render_institutions(request, *, form=None, errors=None, status=200) -> web.Response:
    require_staff(request["actor"], "admin")
    async with _read(request) as s:
        rows = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
    return render(request, "admin/institutions.html", status=status, here="/admin/institutions",
                  institutions=rows, kinds=INSTITUTION_KINDS, form=form or {"kind": "people"}, errors=errors or {})


async def institutions_page(request: web.Request) -> web.Response:
    return await _render_institutions(request)


async def institutions_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await read_form(request)
    form = {k: _clean(post.get(k), 200) for k in ("name", "kind", "area", "prefix")}
    form["prefix"] = form["prefix"].upper()
    body = {"name": form["name"], "area": form["area"]}
    _put(body, "kind", form["kind"])
    _put(body, "prefix", form["prefix"])
    try:
        data = check(request, InstitutionIn, body)
        async with _db(request).session() as s:
            inst = await directory.add_institution(s, actor, data)
            name = inst.name
    except FormInvalid as exc:
        return await _render_institutions(request, form=form, errors=exc.fields, status=422)
    except (ValidationFailed, Conflict) as exc:
        return await _render_institutions(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/institutions", msg=request["t"]("flash.institution_added", name=name))


async def _render_users(request, *, form=None, errors=None, status=200) -> web.Response:
    actor = request["actor"]
    async with _read(request) as s:
        users = [ser.user(u) for u in await directory.list_users(s, actor)]
        insts = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
    names = {i["id"]: i["name"] for i in insts}
    for u in users:
        u["institution"] = names.get(u["institution_id"], "")
    return render(request, "admin/users.html", status=status, here="/admin/users", users=users,
                  institutions=[i for i in insts if i["active"]], roles=ROLES,
                  form=form or {"role": "mediator"}, errors=errors or {},
                  add_open=any(not k.startswith("user-") for k in (errors or {})))


async def users_page(request: web.Request) -> web.Response:
    return await _render_users(request)


async def users_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await read_form(request)
    form = {k: _clean(post.get(k), 100) for k in ("username", "role", "institution_id", "name")}
    body = {"username": form["username"], "password": post.get("password") or "", "name": form["name"]}
    _put(body, "role", form["role"])
    _put(body, "institution_id", _opt_int(form["institution_id"]))
    try:
        data = check(request, UserIn, body)
        async with _db(request).session() as s:
            user = await directory.add_user(s, actor, data)
            username = user.username
    except FormInvalid as exc:
        return await _render_users(request, form=form, errors=exc.fields, status=422)
    except (ValidationFailed, Conflict) as exc:
        return await _render_users(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/users", msg=request["t"]("flash.user_added", name=username))


async def users_update(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    t = request["t"]
    uid = _path_id(request, "user_id")
    post = await read_form(request)
    op = post.get("op")
    if op == "deactivate":
        body, msg = {"active": False}, "flash.user_deactivated"
    elif op == "activate":
        body, msg = {"active": True}, "flash.user_activated"
    elif op == "password":
        body, msg = {"password": post.get("password") or ""}, "flash.password_reset"
    else:
        raise ValidationFailed("Unknown operation.")
    try:
        data = check(request, UserPatch, body)
        async with _db(request).session() as s:
            user = await directory.update_user(s, actor, uid, data)
            name = user.username
    except FormInvalid as exc:
        return await _render_users(request, errors={f"user-{uid}": next(iter(exc.fields.values()))}, status=422)
    except ValidationFailed as exc:
        return await _render_users(request, errors={f"user-{uid}": next(iter(service_fields(request, exc).values()))},
                                   status=exc.status)
    return redirect(request, "/admin/users", msg=t(msg, name=name))


async def _render_experts(request, *, form=None, errors=None, status=200) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    specialty = _clean(request.query.get("specialty"), 40)
    level = request.query.get("level", "")
    level = level if level in EXPERT_LEVELS else ""
    async with _read(request) as s:
        every = await directory.list_experts(s, actor)
        rows = [ser.expert(e) for e in every
                if (not specialty or e.specialty == specialty) and (not level or e.level == level)]
    specialties = sorted({e.specialty for e in every} | set(CATEGORIES),
                         key=lambda x: (x not in CATEGORIES, CATEGORIES.index(x) if x in CATEGORIES else 0, x))
    return render(request, "admin/experts.html", status=status, here="/admin/experts", experts=rows,
                  specialties=specialties, levels=EXPERT_LEVELS, specialty=specialty, level=level,
                  can_add=actor.user.role == "admin", form=form or {"level": "county"}, errors=errors or {})


async def experts_page(request: web.Request) -> web.Response:
    return await _render_experts(request)


async def experts_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await read_form(request)
    form = {k: _clean(post.get(k), 200) for k in ("name", "specialty", "level", "organisation", "phone")}
    body = {k: v for k, v in form.items() if k in ("organisation", "phone")}
    for k in ("name", "specialty", "level"):
        _put(body, k, form[k])
    try:
        data = check(request, ExpertIn, body)
        async with _db(request).session() as s:
            expert = await directory.add_expert(s, actor, data)
            name = expert.name
    except FormInvalid as exc:
        return await _render_experts(request, form=form, errors=exc.fields, status=422)
    except ValidationFailed as exc:
        return await _render_experts(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/experts", msg=request["t"]("flash.expert_added", name=name))


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/institutions", institutions_page)
    r.add_post("/admin/institutions", institutions_add)
    r.add_get("/admin/users", users_page)
    r.add_post("/admin/users", users_add)
    r.add_post("/admin/users/{user_id}", users_update)
    r.add_get("/admin/experts", experts_page)
    r.add_post("/admin/experts", experts_add)
