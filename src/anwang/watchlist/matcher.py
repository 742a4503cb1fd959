"""An in-memory watch-list index that matches plate reads in a few microseconds.

Sized for a million exact entries and ten thousand partial ones, at ingest rates of
100,000 reads a second and more, where almost every read matches nothing. The module is
pure: no I/O, no clock (the caller passes the read time), no database.

Entries
-------
An :class:`Entry` has a ``pattern``: a plate number, normalised by the plate rules the
reads are normalised with (``anwang.checkpoints.plates.normalise``), or a *partial*
pattern in which ``?`` stands for exactly one character and ``*`` for any run of them,
possibly empty (``苏D?23*``). Partial patterns go through :func:`validate_pattern`, which
does the rule-independent part of normalisation and refuses patterns that are empty, all
wildcards, or have fewer than :data:`MIN_FIXED_CHARACTERS` fixed characters (too broad to
be useful, and a flood of hits).

An entry matches a read only if its ``status`` is ``active`` and the read time ``at``
is strictly before ``expires_at``: validity is the half-open interval up to the expiry
instant, so a read at exactly ``expires_at`` no longer matches, one a second earlier
does. ``pending``, ``revoked`` and ``expired`` entries are kept (they count in
``len()``) but are never put into the lookup structures.

Three kinds of hit
------------------
* ``exact`` — the read equals the pattern: one ``dict`` lookup.
* ``approximate`` — the read and the pattern agree after mapping every character but the
  first through a table of characters that cameras confuse (:data:`DEFAULT_CONFUSABLES`:
  ``0 D O Q``, ``1 I T 7``, ``2 Z``, ``4 A``, ``5 S``, ``6 G``, ``8 B``). The table is
  configuration: a mapping from a group of ASCII letters and digits to the character
  that stands for the group. The first character — on a mainland plate the province —
  is never mapped: a plate of another province is another vehicle. The canonical form of
  every exact pattern is precomputed, so this is one more ``dict`` lookup, keyed by the
  UTF-8 bytes of the canonical form (``bytes.translate`` costs a tenth of
  ``str.translate``). An entry already hit exactly is not hit approximately too.
* ``partial`` — the read matches a partial pattern.

Approximate and partial hits never carry priority 1: a 1 becomes a 2, because such a hit
is a lead for a person to confirm, not a confirmed sighting.

How partial matching stays cheap
--------------------------------
All partial patterns live in one character trie (``?`` and ``*`` are edges of their own).
The trie is split by its first edge into buckets — in practice one per province
character, plus one *slow* bucket for the patterns that begin with a wildcard — and each
bucket is compiled into a single regular expression whose shape is the trie itself
(common prefixes are shared, so ``re`` rejects a read after a few character comparisons
instead of trying 10,000 alternatives). A read costs one ``dict`` lookup for its
province's bucket, one ``fullmatch`` there, and one ``fullmatch`` in the slow bucket if
that bucket is not empty. Only when a regular expression matches — rarely — is the trie
walked in Python to list every entry that matches; the trie, not the expression, is the
truth, so an expression may match a little more than the bucket holds.

Plates that nothing can match
-----------------------------
Most reads match nothing, and the same vehicles pass checkpoint after checkpoint. A
plate for which no entry is even a candidate — no exact or approximate slot, no partial
pattern — is remembered (up to :data:`MISS_MEMORY` plates), and its next read costs one
set lookup. Whether a plate has candidates does not depend on the read time, so only an
addition can make a remembered plate match: ``add`` forgets them all, ``remove`` keeps
them.

That is what makes changes cheap. ``add`` and ``remove`` update the trie at once. A
removal compiles nothing: the bucket's expression still matches the removed pattern,
which costs at most a walk that finds nothing. An addition goes into a small second
expression of the bucket's *fresh* patterns, compiled on the next read that needs it. The
bucket's main expression is recompiled only after :attr:`_Bucket.FRESH_LIMIT` additions
or when removals pass a quarter of it (a bucket of 7,000 patterns compiles in about
30 ms, see ``docs/performance.md``).

A province with very many partial patterns makes its own bucket bigger, not the reads of
other provinces slower; patterns that begin with a wildcard are paid for by every read,
so keep them few.

To bound backtracking, a partial pattern has at most :data:`MAX_PATTERN_LENGTH`
characters and :data:`MAX_STARS` stars, and reads longer than :data:`MAX_READ_LENGTH`
(no plate is that long) are matched exactly and approximately but not partially.

The index is not safe for concurrent mutation: one writer (applying watch-list changes)
and reads from the same thread, or a lock around it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_CONFUSABLES",
    "MAX_PATTERN_LENGTH",
    "MAX_READ_LENGTH",
    "MAX_STARS",
    "MIN_FIXED_CHARACTERS",
    "STATUSES",
    "Entry",
    "Hit",
    "MatchKind",
    "WatchIndex",
    "validate_pattern",
]

ACTIVE = "active"
STATUSES = frozenset({"active", "pending", "revoked", "expired"})
ONE = "?"
ANY = "*"
WILDCARDS = frozenset(ONE + ANY)

MIN_FIXED_CHARACTERS = 3
MAX_PATTERN_LENGTH = 16
MAX_STARS = 3
MAX_READ_LENGTH = 16
#: Plates remembered as matching nothing (see the module docstring); when full, the
#: memory starts again from empty.
MISS_MEMORY = 262_144

#: Groups of characters that plate cameras confuse, each with the character that stands
#: for the group. Configuration: pass another mapping to :meth:`WatchIndex.build`.
DEFAULT_CONFUSABLES: Mapping[str, str] = MappingProxyType(
    {
        "0DOQ": "0",
        "1IT7": "1",
        "2Z": "2",
        "4A": "4",
        "5S": "5",
        "6G": "6",
        "8B": "8",
    }
)

# Separators dropped from partial patterns (as the plate rules drop them from plates).
_SEPARATORS = dict.fromkeys(map(ord, ".·•・‧∙-‐‑‒–—―_\u200b\u200c\u200d\u2060\ufeff"))
_STAR_RUN = re.compile(r"\*{2,}")
_END = ""  # trie key of the entries whose pattern ends at a node


class MatchKind(StrEnum):
    EXACT = "exact"
    APPROXIMATE = "approximate"
    PARTIAL = "partial"


_KIND_RANK = {MatchKind.EXACT: 0, MatchKind.APPROXIMATE: 1, MatchKind.PARTIAL: 2}


@dataclass(frozen=True, slots=True)
class Entry:
    """One watch-list entry. ``reason`` and ``recipients`` are opaque to the matcher."""

    id: str
    pattern: str
    priority: int
    expires_at: datetime
    status: str = ACTIVE
    reason: str = ""
    recipients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an entry needs an id")
        if not self.pattern:
            raise ValueError("an entry needs a pattern")
        if type(self.priority) is not int or not 1 <= self.priority <= 3:
            raise ValueError("priority must be 1, 2 or 3")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        if self.expires_at.tzinfo is None or self.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")

    @property
    def is_partial(self) -> bool:
        return ONE in self.pattern or ANY in self.pattern


@dataclass(frozen=True, slots=True)
class Hit:
    entry_id: str
    kind: MatchKind
    priority: int


def validate_pattern(pattern: str) -> str:
    """The normalised form of a partial pattern, or ``ValueError`` saying why not.

    Normalisation: NFKC (full-width ``？``/``＊`` and letters become ASCII), upper case,
    whitespace and separators removed, runs of ``*`` collapsed to one.
    """
    text = unicodedata.normalize("NFKC", pattern).upper()
    text = _STAR_RUN.sub(ANY, "".join(text.translate(_SEPARATORS).split()))
    if not text:
        raise ValueError("empty pattern")
    for c in text:
        if not (c.isalnum() or c in WILDCARDS):
            raise ValueError(f"character U+{ord(c):04X} is not allowed in a pattern")
    fixed = sum(1 for c in text if c not in WILDCARDS)
    if fixed == 0:
        raise ValueError("a pattern of only wildcards matches everything")
    if fixed < MIN_FIXED_CHARACTERS:
        raise ValueError(
            f"too broad: {fixed} fixed characters, at least {MIN_FIXED_CHARACTERS} needed"
        )
    if len(text) > MAX_PATTERN_LENGTH:
        raise ValueError(f"longer than {MAX_PATTERN_LENGTH} characters")
    if text.count(ANY) > MAX_STARS:
        raise ValueError(f"more than {MAX_STARS} '*'")
    return text


def _confusable_table(groups: Mapping[str, str]) -> bytes:
    """A 256-byte table for ``bytes.translate`` from the group → canonical mapping."""
    table = bytearray(range(256))
    seen: dict[str, str] = {}
    for group, canonical in groups.items():
        if len(canonical) != 1:
            raise ValueError("a confusable group maps to one character")
        for c in group + canonical:
            if not (c.isascii() and c.isalnum()):
                raise ValueError(f"confusables are ASCII letters and digits, not {c!r}")
        for c in group:
            if seen.setdefault(c, group) != group:
                raise ValueError(f"{c!r} is in two confusable groups")
            table[ord(c)] = ord(canonical)
    for group, canonical in groups.items():
        if canonical in seen and seen[canonical] != group:
            raise ValueError(f"canonical {canonical!r} belongs to another group")
    return bytes(table)


# Several entries can share a key; a slot holds one Entry or a tuple of them.
_Slot = Any


def _put(index: dict[Any, _Slot], key: Any, entry: Entry) -> None:
    current = index.get(key)
    if current is None:
        index[key] = entry
    elif type(current) is tuple:
        index[key] = (*current, entry)
    else:
        index[key] = (current, entry)


def _drop(index: dict[Any, _Slot], key: Any, entry_id: str) -> None:
    current = index.get(key)
    if current is None:
        return
    if type(current) is tuple:
        rest = tuple(e for e in current if e.id != entry_id)
        if len(rest) == 1:
            index[key] = rest[0]
        elif rest:
            index[key] = rest
        else:
            del index[key]
    elif current.id == entry_id:
        del index[key]


def _emit(node: dict[str, Any]) -> str:
    """A regular expression with the shape of a trie node (matched with ``fullmatch``)."""
    alternatives = []
    for token in sorted(node):
        if token == _END:
            alternatives.append("")
            continue
        head = "." if token == ONE else ".*" if token == ANY else re.escape(token)
        alternatives.append(head + _emit(node[token]))
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


def _collect(node: dict[str, Any], plate: str, i: int, out: dict[str, Entry]) -> None:
    """Every entry under ``node`` whose pattern matches ``plate[i:]``."""
    n = len(plate)
    if i == n:
        ended = node.get(_END)
        if ended:
            out.update(ended)
    else:
        child = node.get(plate[i])
        if child is not None:
            _collect(child, plate, i + 1, out)
        child = node.get(ONE)
        if child is not None:
            _collect(child, plate, i + 1, out)
    star = node.get(ANY)
    if star is not None:
        for j in range(i, n + 1):
            _collect(star, plate, j, out)


class _Bucket:
    """The partial patterns under one first trie edge, with their compiled prefilter.

    ``main`` was compiled from the whole bucket at some point; ``fresh`` holds the
    patterns added since. Together they match a superset of the bucket's patterns: a
    removal leaves ``main`` as it is — a pattern that is gone costs at most a trie walk
    that finds nothing — so removing never compiles, and adding compiles only the few
    fresh patterns. ``main`` is rebuilt (on the next read that needs it) once there are
    more than ``FRESH_LIMIT`` fresh patterns, or once removals exceed a quarter of it
    (plus ``STALE_SLACK``).
    """

    FRESH_LIMIT = 64
    STALE_SLACK = 16

    __slots__ = ("fresh", "fresh_patterns", "key", "main", "main_size", "node", "stale", "trie")

    def __init__(self, trie: dict[str, Any], key: str) -> None:
        self.trie = trie
        self.key = key
        self.node: dict[str, Any] = {}
        self.main: re.Pattern[str] | None = None
        self.main_size = 0
        self.stale = 0
        self.fresh: re.Pattern[str] | None = None
        self.fresh_patterns: set[str] = set()
        self._relink()

    def _relink(self) -> None:
        # The trie nodes this bucket covers: one edge of the root, or both wildcard edges.
        keys = (self.key,) if self.key else (ONE, ANY)
        self.node = {k: self.trie[k] for k in keys if k in self.trie}

    def is_empty(self) -> bool:
        self._relink()
        return not self.node

    def added(self, pattern: str) -> None:
        self._relink()
        if self.main is None:
            return  # the next prefilter() compiles everything anyway
        self.fresh_patterns.add(pattern)
        self.fresh = None
        if len(self.fresh_patterns) > self.FRESH_LIMIT:
            self.main = None

    def removed(self) -> None:
        self._relink()
        self.stale += 1
        if self.main is not None and self.stale > self.STALE_SLACK + self.main_size // 4:
            self.main = None

    def prefilter(self) -> re.Pattern[str]:
        """(Re)compile ``main`` from the whole bucket."""
        self.main = re.compile(_emit(self.node), re.DOTALL)
        self.main_size = _count(self.node)
        self.stale = 0
        self.fresh = None
        self.fresh_patterns = set()
        return self.main

    def may_match(self, plate: str) -> bool:
        main = self.main or self.prefilter()
        if main.fullmatch(plate) is not None:
            return True
        if not self.fresh_patterns:
            return False
        if self.fresh is None:
            trie: dict[str, Any] = {}
            for pattern in self.fresh_patterns:
                node = trie
                for c in pattern:
                    node = node.setdefault(c, {})
                node[_END] = True
            self.fresh = re.compile(_emit(trie), re.DOTALL)
        return self.fresh.fullmatch(plate) is not None


def _count(node: dict[str, Any]) -> int:
    """The number of patterns (trie ends) under ``node``."""
    return sum(1 if key == _END else _count(child) for key, child in node.items())


class WatchIndex:
    """Exact, approximate and partial matching of normalised plate reads; see the module."""

    __slots__ = ("_approx", "_buckets", "_entries", "_exact", "_misses", "_partial", "_table",
                 "_trie")

    def __init__(self, confusables: Mapping[str, str] = DEFAULT_CONFUSABLES) -> None:
        self._table = _confusable_table(confusables)
        self._entries: dict[str, Entry] = {}
        self._exact: dict[str, _Slot] = {}
        self._approx: dict[bytes, _Slot] = {}
        self._partial: dict[str, str] = {}  # entry id → validated pattern (active only)
        self._trie: dict[str, Any] = {}
        # First trie edge (a character, or "" for the wildcard-led bucket) → its bucket.
        self._buckets: dict[str, _Bucket] = {}
        # Plates with no candidate entry at all (forgotten on every addition).
        self._misses: set[str] = set()

    @classmethod
    def build(
        cls, entries: Iterable[Entry], confusables: Mapping[str, str] = DEFAULT_CONFUSABLES
    ) -> WatchIndex:
        """An index of ``entries``; a repeated id is an error."""
        index = cls(confusables)
        for entry in entries:
            if entry.id in index._entries:
                raise ValueError(f"duplicate entry id {entry.id!r}")
            index._insert(entry)
        for bucket in index._buckets.values():
            bucket.prefilter()
        return index

    # -- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def canonical(self, plate: str) -> bytes:
        """The approximate-match key of ``plate``: its first character kept, the rest mapped."""
        raw = plate.encode()
        key = raw.translate(self._table)
        if raw and raw[0] < 0x80 and key[0] != raw[0]:
            key = raw[:1] + key[1:]
        return key

    def match(self, plate: str, at: datetime) -> list[Hit]:
        """The hits of a normalised plate read at time ``at`` (aware), best first.

        Order: priority, then exact before approximate before partial, then entry id.
        """
        if plate in self._misses:
            return []
        hits: list[Hit] | None = None

        found = self._exact.get(plate)
        if found is not None:
            hits = []
            for entry in found if type(found) is tuple else (found,):
                if _live(entry, at):
                    hits.append(Hit(entry.id, MatchKind.EXACT, entry.priority))

        raw = plate.encode()
        key = raw.translate(self._table)
        if raw and raw[0] < 0x80 and key[0] != raw[0]:
            key = raw[:1] + key[1:]
        approx = self._approx.get(key)
        if approx is not None:
            for entry in approx if type(approx) is tuple else (approx,):
                if entry.pattern != plate and _live(entry, at):
                    if hits is None:
                        hits = []
                    hits.append(Hit(entry.id, MatchKind.APPROXIMATE, max(entry.priority, 2)))

        partial = None
        if self._trie and plate and len(plate) <= MAX_READ_LENGTH:
            partial = self._match_partial(plate, at)
            if partial:
                if hits is None:
                    hits = []
                hits.extend(partial)

        if not hits:
            if found is None and approx is None and partial is None:
                misses = self._misses
                if len(misses) >= MISS_MEMORY:
                    misses.clear()
                misses.add(plate)
            return []
        if len(hits) > 1:
            hits.sort(key=_hit_order)
        return hits

    def _match_partial(self, plate: str, at: datetime) -> list[Hit] | None:
        """The live partial hits; None when no partial pattern matches at all."""
        matched: dict[str, Entry] | None = None
        bucket = self._buckets.get(plate[0])
        if bucket is not None and bucket.may_match(plate):
            matched = {}
            _collect(bucket.node, plate, 0, matched)
        bucket = self._buckets.get("")
        if bucket is not None and bucket.may_match(plate):
            if matched is None:
                matched = {}
            _collect(bucket.node, plate, 0, matched)
        if not matched:
            return None
        return [
            Hit(entry.id, MatchKind.PARTIAL, max(entry.priority, 2))
            for entry in matched.values()
            if _live(entry, at)
        ]

    # -- changing ----------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        """Add ``entry``, replacing an entry with the same id (e.g. a status change)."""
        pattern = validate_pattern(entry.pattern) if entry.is_partial else None
        if entry.id in self._entries:
            self.remove(entry.id)
        self._insert(entry, pattern)
        self._misses.clear()  # the new entry may match a plate that matched nothing

    def remove(self, entry_id: str) -> bool:
        """Remove an entry; ``False`` when there was none with that id."""
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return False
        pattern = self._partial.pop(entry_id, None)
        if pattern is not None:
            self._trie_remove(pattern, entry_id)
        elif entry.status == ACTIVE and not entry.is_partial:
            _drop(self._exact, entry.pattern, entry_id)
            _drop(self._approx, self.canonical(entry.pattern), entry_id)
        return True

    def _insert(self, entry: Entry, pattern: str | None = None) -> None:
        if entry.is_partial:
            if pattern is None:
                pattern = validate_pattern(entry.pattern)  # raises before anything changes
            self._entries[entry.id] = entry
            if entry.status == ACTIVE:
                self._partial[entry.id] = pattern
                self._trie_add(pattern, entry)
            return
        self._entries[entry.id] = entry
        if entry.status == ACTIVE:
            _put(self._exact, entry.pattern, entry)
            key = self.canonical(entry.pattern)
            _put(self._approx, key, entry)

    # -- the partial-pattern trie --------------------------------------------------------

    def _bucket_of(self, pattern: str) -> _Bucket:
        key = "" if pattern[0] in WILDCARDS else pattern[0]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._trie, key)
        return bucket

    def _trie_add(self, pattern: str, entry: Entry) -> None:
        node = self._trie
        for c in pattern:
            node = node.setdefault(c, {})
        node.setdefault(_END, {})[entry.id] = entry
        self._bucket_of(pattern).added(pattern)

    def _trie_remove(self, pattern: str, entry_id: str) -> None:
        path = [self._trie]
        for c in pattern:
            path.append(path[-1][c])
        ended = path[-1][_END]
        del ended[entry_id]
        if not ended:
            del path[-1][_END]
        for depth in range(len(pattern), 0, -1):  # prune empty nodes
            if path[depth]:
                break
            del path[depth - 1][pattern[depth - 1]]
        bucket = self._bucket_of(pattern)
        if bucket.is_empty():
            del self._buckets[bucket.key]
        else:
            bucket.removed()

    def stats(self) -> dict[str, int]:
        """Sizes, for monitoring and benchmarks."""
        return {
            "entries": len(self._entries),
            "exact_keys": len(self._exact),
            "approximate_keys": len(self._approx),
            "partial": len(self._partial),
            "partial_buckets": len(self._buckets),
        }


def _live(entry: Entry, at: datetime) -> bool:
    if at.tzinfo is None:
        raise ValueError("the read time must be timezone-aware (UTC)")
    return at < entry.expires_at


def _hit_order(hit: Hit) -> tuple[int, int, str]:
    return (hit.priority, _KIND_RANK[hit.kind], hit.entry_id)
