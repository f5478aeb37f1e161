"""Translations: zh-CN by default, English on request (?lang=en, then a cookie)."""
from __future__ import annotations

import json
from functools import lru_cache

from web import I18N

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict[str, str]:
    """`{lang}.json` plus every `<part>.{lang}.json` (e.g. room.zh-CN.json for the live room)."""
    merged = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
    for extra in sorted(I18N.glob(f"*.{lang}.json")):
        merged.update(json.loads(extra.read_text(encoding="utf-8")))
    return merged


def translator(lang: str):
    primary, fallback = catalog(lang), catalog(DEFAULT_LANG)

    def t(key: str, **kw) -> str:
        text = primary.get(key) or fallback.get(key) or key
        return text.format(**kw) if kw else text

    return t


def pick_lang(query_lang: str | None, cookie_lang: str | None, accept: str | None) -> str:
    for cand in (query_lang, cookie_lang):
        if cand in LANGS:
            return cand
    if accept and accept.lower().startswith("en"):
        return "en"
    return DEFAULT_LANG
