"""The gettext catalogues: complete in Chinese, and compiled from their current sources.

Messages are extracted from the Python sources and the templates exactly as
``pybabel extract -F babel.cfg`` does (same mapping file, Babel's API), so a text added
to a page without a translation fails here, not in front of a user. See docs/i18n.md.
"""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

import anwang
from anwang.web.templating import LOCALE_DIR, SUPPORTED_LOCALES

PACKAGE = Path(anwang.__file__).parent
REPO = PACKAGE.parent.parent
BABEL_CFG = REPO / "babel.cfg"


@pytest.fixture(scope="module")
def extracted() -> set[str | tuple[str, ...]]:
    with BABEL_CFG.open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f, filename=str(BABEL_CFG))
    ids: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
        PACKAGE, method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        assert context is None, "message contexts are not used"
        ids.add(message if isinstance(message, str) else tuple(message))
    return ids


def _read(locale: str) -> Catalog:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "anwang.po").open("rb") as f:
        return read_po(f, locale=locale)


def _key(msg_id: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    return msg_id if isinstance(msg_id, str) else tuple(msg_id)


def test_extraction_finds_the_pages_texts(extracted: set[str | tuple[str, ...]]) -> None:
    # Guards the test itself: both the templates and the Python sources were read.
    assert "Sign in to anwang" in extracted  # login.html
    assert "Administrator" in extracted  # templating.py, marked with N_
    assert "The username or password is not correct." in extracted  # pages.py


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_message_is_in_the_catalogue(
    locale: str, extracted: set[str | tuple[str, ...]]
) -> None:
    catalog = _read(locale)
    have = {_key(m.id) for m in catalog if m.id}
    missing = sorted(map(str, extracted - have))
    assert not missing, (
        f"{locale}: messages missing from the catalogue; run the update in docs/i18n.md: "
        f"{missing}"
    )


def test_every_message_has_a_chinese_translation(
    extracted: set[str | tuple[str, ...]],
) -> None:
    catalog = _read("zh_CN")
    by_id = {_key(m.id): m for m in catalog if m.id}
    untranslated = []
    for msg_id in extracted:
        m = by_id.get(msg_id)
        strings = (m.string,) if m is not None and isinstance(m.string, str) else (
            tuple(m.string) if m is not None else ("",)
        )
        if m is None or m.fuzzy or not all(s.strip() for s in strings):
            untranslated.append(str(msg_id))
    assert not untranslated, f"zh_CN lacks translations of: {sorted(untranslated)}"


def test_placeholders_survive_translation() -> None:
    placeholder = re.compile(r"%\(\w+\)[sd]")
    for m in _read("zh_CN"):
        if not m.id or not m.string:
            continue
        ids = (m.id,) if isinstance(m.id, str) else tuple(m.id)
        strings = (m.string,) if isinstance(m.string, str) else tuple(m.string)
        wanted = set(placeholder.findall(ids[-1]))
        for s in strings:
            assert set(placeholder.findall(s)) == wanted, (m.id, s)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_mo_files_are_compiled_from_the_po_files(locale: str) -> None:
    buf = io.BytesIO()
    write_mo(buf, _read(locale))
    buf.seek(0)
    expected = gettext.GNUTranslations(buf)
    mo = LOCALE_DIR / locale / "LC_MESSAGES" / "anwang.mo"
    with mo.open("rb") as f:
        actual = gettext.GNUTranslations(f)
    # ``_catalog`` is the parsed message table of a GNUTranslations object.
    assert actual._catalog == expected._catalog, (  # type: ignore[attr-defined]
        f"{mo} is stale: run `pybabel compile -d src/anwang/locale -D anwang`"
    )
