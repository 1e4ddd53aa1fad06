"""Deterministic synthetic CRM data: the same seed always gives the same ids, names and times.

Times are laid out relative to an anchor (the start of the current UTC day), not the
real clock, so two sandboxes started on the same day with the same seed hold identical
data, while changes made later (API writes, churn) carry real, later timestamps.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate

import orjson

from leadrat_source.contract import ID_PREFIX_LEAD, ID_PREFIX_PIPELINE, ID_PREFIX_STAGE
from leadrat_source.sandbox.clock import DAY_MS

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SHIFTS = (35, 30, 25, 20, 15, 10, 5, 0)  # eight base-32 digits, most significant first

FIRST_NAMES = (
    "Priya", "Zoë", "José", "李", "Amélie", "Søren", "Aarav", "Fatima", "Jürgen", "Chloé",
    "Mohammed", "Olga", "Ngozi", "Kenji", "Anaïs", "Björn", "Ana", "Raj", "Émile", "Yuki",
    "Łukasz", "Siobhán", "Dmitrii", "Maria", "Ahmed", "Lucía", "Tomás", "Ingrid", "Wei", "Sara",
)
LAST_NAMES = (
    "Sharma", "Ølsen", "Ñúñez", "娜", "Dubois", "Kierkegaard", "Patel", "Al-Sayed", "Müller",
    "Lefèvre", "Khan", "Ivanova", "Okafor", "Tanaka", "Moreau", "Åström", "García", "Iyer",
    "Zoltán", "Nakamura", "Wałęsa", "O'Brien", "Петров", "Silva", "Haddad", "Fernández",
    "Cruz", "Berg", "Zhang", "Smith",
)
COMPANIES = (
    "Acme Realty", "Brightside Homes", "Café Ümlaut GmbH", "Dragon 龙 Estates", "Evergreen LLP",
    "Fjord & Co", "Globex", "Horizon Builders", "Initech", "Jaipur Properties",
)
DOMAINS = ("example.com", "example.org", "mail.example.net", "test.example")
SOURCES = (
    "website", "referral", "google_ads", "facebook_ads", "walk_in", "partner",
    "trade_show", "other",
)
SOURCE_WEIGHTS = (30, 15, 15, 12, 8, 8, 7, 5)
STATUSES = ("new", "contacted", "qualified", "converted", "lost")
STATUS_WEIGHTS = (30, 25, 20, 12, 13)
TAGS = ("vip", "hot", "cold", "follow_up", "newsletter", "investor", "first_time", "nri")
INDUSTRIES = ("real_estate", "finance", "retail", "tech", "health", "education")
CITIES = (("Mumbai", "IN"), ("Zürich", "CH"), ("São Paulo", "BR"), ("東京", "JP"),
          ("Austin", "US"), ("Kraków", "PL"))
INTERESTS = ("2bhk", "3bhk", "villa", "plot", "commercial", "rental")
#: Text values real CRMs hold that a loader must store exactly as they are: blanks (which
#: CSV loaders like to turn into NULL), unicode that breaks naive code (emoji sequences,
#: right-to-left text, combining marks, control characters other than NUL, which no
#: warehouse text type holds), quotes and backslashes.
BLANKS = ("", " ", "   ", "\t", "\n", " \r\n ")
UNICODE_EDGES = (
    "👩‍👩‍👧‍👦 family of four", "🇮🇳🇧🇷🇯🇵", "thumbs 👍🏽 up", "مرحبا، نلتقي غدا", "שלום עולם",
    "abc \u202eRTL override\u202c def", "cafe\u0301 de\u0301ja\u0300 vu",
    "Z\u0351\u0300a\u0316l\u0317g\u0353o\u0489", "bell\x07 esc\x1b[31m del\x7f",
    "\x01\x02\x1f unit separators", "line\u2028separator\u2029paragraph",
    "nbsp\u00a0zero\u200bwidth\u200djoiner", "\ufeffstarts with a BOM", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "CR\rLF\nCRLF\r\n", "next\u0085line", "it's \"quoted\" and back\\slashed",
    "trailing space ", " leading space", "tab\tseparated\tvalues", "NULL", "null",
)
PLAIN_NOTES = ("Call back on Monday", "Wants a sea view", "Budget approved by CFO",
               "Met at the expo", "Prefers WhatsApp")
#: Very long free text (pasted e-mails, transcripts); built once, a few leads hold them.
LONG_TEXTS = tuple(
    "".join(f"Transcript line {line}: the client asked about the 3BHK near the metro, "
            "«déjà vu» 🏠.\n" for line in range(size // 70 + 1))[:size]
    for size in (2_000, 12_000, 60_000)
)
#: Every edge text once: the first leads of any sandbox hold these as `notes`, so even a
#: small test sandbox has each of them; later leads draw them at random.
EDGE_TEXTS = BLANKS + UNICODE_EDGES + LONG_TEXTS
PIPELINE_NAMES = ("Sales", "Enterprise", "Partners", "Renewals", "Onboarding", "Rentals")
STAGE_NAMES = ("New", "Contacted", "Site visit", "Qualified", "Negotiation", "Won")

#: Question stems of a wide account's custom fields (`custom_keys`): names as CRM users
#: type them (capitals, spaces, punctuation, accents), each key made unique by its number.
WIDE_STEMS = ("Budget", "Preferred City", "site-visit date", "Référence client", "lead.score",
              "Campaign ID", "Opt in?", "Loan pre-approved", "Floor preference", "Notes")
#: Every this many keys, one is a long question: longer than PostgreSQL's 63-byte names.
LONG_KEY_EVERY = 11
#: A wide account's leads each come from one form, which asks this many of the keys.
FORM_SIZE = 30
#: Share of its form's questions a lead answered.
FORM_FILL = 0.8

HISTORY_DAYS = 730
#: Deleted leads stay visible for 30 days; synthetic deletions stay inside that.
DELETED_WITHIN_DAYS = 29


def encode_id(prefix: str, number: int) -> str:
    """ULID-looking, fixed-width ids, so string order equals number order."""
    return f"{prefix}01{''.join([CROCKFORD[(number >> shift) & 31] for shift in _SHIFTS])}"


def ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


@dataclass(frozen=True)
class Stage:
    id: str
    name: str
    position: int
    probability: float


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    stages: tuple[Stage, ...]
    created_at_ms: int
    updated_at_ms: int


def make_pipelines(count: int, rng: random.Random, anchor_ms: int) -> list[Pipeline]:
    pipelines = []
    stage_number = 1
    for number in range(1, count + 1):
        size = rng.randint(3, 6)
        names = list(STAGE_NAMES[: size - 1]) + ["Won"]
        stages = []
        for position, name in enumerate(names, start=1):
            probability = round(position / size, 2) if position < size else 1.0
            stages.append(Stage(encode_id(ID_PREFIX_STAGE, stage_number), name, position,
                                probability))
            stage_number += 1
        created = anchor_ms - (HISTORY_DAYS + 30) * DAY_MS + number * 3_600_000
        name = PIPELINE_NAMES[(number - 1) % len(PIPELINE_NAMES)]
        if number > len(PIPELINE_NAMES):
            name = f"{name} {number}"
        pipelines.append(Pipeline(encode_id(ID_PREFIX_PIPELINE, number), name, tuple(stages),
                                  created, created + rng.randint(0, 90) * DAY_MS))
    return pipelines


def _weighted(rng: random.Random, population: tuple[str, ...],
              weights: tuple[int, ...]) -> Callable[[], str]:
    """`rng.choices(population, weights)[0]` as a closure: the same draw, without rebuilding
    the cumulative weights for every lead."""
    cumulative = list(accumulate(weights))
    total = cumulative[-1] + 0.0
    hi = len(cumulative) - 1
    random_ = rng.random
    return lambda: population[bisect(cumulative, random_() * total, 0, hi)]


def _sampler(rng: random.Random) -> Callable[[tuple[str, ...], int], list[str]]:
    """`rng.sample(population, k)` for small populations (n <= 21, CPython's pool branch)."""
    below = rng._randbelow  # type: ignore[attr-defined]

    def sample(population: tuple[str, ...], k: int) -> list[str]:
        pool = list(population)
        n = len(pool)
        result = []
        for i in range(k):
            j = below(n - i)
            result.append(pool[j])
            pool[j] = pool[n - i - 1]
        return result

    return sample


def _people() -> list[list[tuple[str, str]]]:
    """(full name, e-mail local part) for every first/last name pair, computed once."""
    table = []
    for first in FIRST_NAMES:
        row = []
        for last in LAST_NAMES:
            local = ascii_slug(first) + "." + ascii_slug(last) if ascii_slug(first + last) \
                else "user"
            row.append((f"{first} {last}", local.strip(".")))
        table.append(row)
    return table


def wide_custom_keys(count: int) -> list[str]:
    """The extra custom field keys of a wide account, in the order forms ask them."""
    keys = []
    for number in range(count):
        if number % LONG_KEY_EVERY == LONG_KEY_EVERY // 2:
            keys.append(f"Form question {number:05d}: what would make the customer sign "
                        "before the end of this quarter?")
        else:
            keys.append(f"{WIDE_STEMS[number % len(WIDE_STEMS)]} {number:05d}")
    return keys


def _wide_value(kind: int, below: Callable[[int], int], random_: Callable[[], float]) -> object:
    """A value of one of seven JSON kinds (a key's number fixes its kind): integer,
    float, text, text that is often "", boolean, object, list."""
    if kind == 0:
        return below(100_000)
    if kind == 1:
        return round(random_() * 1000, 2)
    if kind == 2:
        return f"v{below(1000)}"
    if kind == 3:
        return "" if random_() < 0.5 else "n/a"
    if kind == 4:
        return random_() < 0.5
    if kind == 5:
        return {"rank": below(10), "note": ""}
    return [below(10), "x"]


@dataclass(frozen=True, slots=True)
class _Draw:
    """The RNG's primitives the lead fields are drawn with (see `lead_rows` for why these).

    Every helper below draws in the order the fields were first written in, one after the
    other from one RNG: drawing one number more, fewer or earlier changes every later lead
    of a seed, and tests compare loads against the sandbox's data.
    """

    below: Callable[[int], int]
    chance: Callable[[], float]
    sample: Callable[[tuple[str, ...], int], list[str]]
    status: Callable[[], str]
    source: Callable[[], str]

    @classmethod
    def of(cls, rng: random.Random) -> _Draw:
        return cls(rng._randbelow, rng.random, _sampler(rng),  # type: ignore[attr-defined]
                   _weighted(rng, STATUSES, STATUS_WEIGHTS),
                   _weighted(rng, SOURCES, SOURCE_WEIGHTS))


@dataclass(frozen=True, slots=True)
class _Timeline:
    """created/updated/deleted times over `HISTORY_DAYS` before the anchor."""

    start: int
    anchor_ms: int
    #: Bulk imports and mass updates: many leads share one updated_at millisecond.
    clusters: list[int]

    @classmethod
    def of(cls, rng: random.Random, anchor_ms: int, count: int) -> _Timeline:
        start = anchor_ms - HISTORY_DAYS * DAY_MS
        span = HISTORY_DAYS * DAY_MS
        clusters = sorted(start + rng.randrange(span) for _ in range(max(3, count // 150)))
        return cls(start, anchor_ms, clusters)

    def times(self, draw: _Draw) -> tuple[int, int, int | None]:
        below, random_, anchor_ms = draw.below, draw.chance, self.anchor_ms
        created = self.start + below(HISTORY_DAYS * DAY_MS)
        kind = random_()
        if kind < 0.3:
            updated = created
        elif kind < 0.7:
            updated = created + below(anchor_ms - created)
        else:
            updated = self.clusters[below(len(self.clusters))]
            created = min(created, updated - below(30 * DAY_MS))
        deleted = None
        if random_() < 0.03:
            deleted = anchor_ms - 1 - below(DELETED_WITHIN_DAYS * DAY_MS)
            created = min(created, deleted - (1 + below(60 * DAY_MS - 1)))
            updated = deleted
        return created, updated, deleted


def _person(people: list[list[tuple[str, str]]], seq: int, draw: _Draw) -> tuple[str, str]:
    """(name, e-mail); the sequence number keeps e-mails unique."""
    below = draw.below
    first = below(len(FIRST_NAMES))
    name, local = people[first][below(len(LAST_NAMES))]
    return name, f"{local}.{seq}@{DOMAINS[below(len(DOMAINS))]}"


def _placement(pipeline_stages: list[tuple[str, list[str]]],
               draw: _Draw) -> tuple[str | None, str | None]:
    """(pipeline_id, stage_id); some leads sit in no pipeline."""
    if draw.chance() < 0.85:
        pipeline_id, stage_ids = pipeline_stages[draw.below(len(pipeline_stages))]
        return pipeline_id, stage_ids[draw.below(len(stage_ids))]
    return None, None


def _company(draw: _Draw) -> str | None:
    company = None if draw.chance() < 0.3 else COMPANIES[draw.below(len(COMPANIES))]
    if company is not None and draw.chance() < 0.03:
        company = BLANKS[draw.below(len(BLANKS))]  # a form field left blank is not a NULL
    return company


def _note(seq: int, draw: _Draw) -> str:
    if seq <= len(EDGE_TEXTS):
        return EDGE_TEXTS[seq - 1]
    below, kind = draw.below, draw.chance()
    if kind < 0.25:
        return BLANKS[below(len(BLANKS))]
    if kind < 0.5:
        return UNICODE_EDGES[below(len(UNICODE_EDGES))]
    if kind < 0.999:
        return PLAIN_NOTES[below(len(PLAIN_NOTES))]
    return LONG_TEXTS[below(len(LONG_TEXTS))]


def _external_ref(draw: _Draw) -> object:
    """One key, many JSON types: what a CRM fed by several import tools holds."""
    below, random_ = draw.below, draw.chance
    kind = below(8)
    if kind == 0:
        return below(1_000_000)
    if kind == 1:
        return str(below(1_000_000))
    if kind == 2:
        return f"CRM-{below(100_000):05d}"
    if kind == 3:
        return random_() < 0.5
    if kind == 4:
        return round(1000 * random_(), 3)
    if kind == 5:
        return {"system": "sap", "id": below(1_000_000), "synced": random_() < 0.5}
    if kind == 6:
        return [below(100), "x", None, {"nested": []}]
    return ""


def _account_fields(draw: _Draw) -> dict[str, object]:
    """The custom fields that keep one JSON type across leads; many leads lack some."""
    below, random_ = draw.below, draw.chance
    fields: dict[str, object] = {}
    if random_() < 0.6:
        fields["budget"] = round(20_000 + 1_980_000 * random_(), 2)
    if random_() < 0.5:
        fields["employees"] = 1 + below(5000)
    if random_() < 0.5:
        fields["industry"] = INDUSTRIES[below(len(INDUSTRIES))]
    if random_() < 0.4:
        fields["newsletter"] = random_() < 0.5
    if random_() < 0.35:
        city, country = CITIES[below(len(CITIES))]
        fields["address"] = {"city": city, "country": country, "floor": below(41)}
    if random_() < 0.3:
        fields["interests"] = draw.sample(INTERESTS, 1 + below(3))
    return fields


def _edge_fields(fields: dict[str, object], seq: int, name: str, draw: _Draw) -> None:
    """The custom fields a loader finds hard: edge texts, a key of many JSON types
    (`external_ref`), booleans mixed with 0/1 (`opted_in`), nested objects."""
    below, random_ = draw.below, draw.chance
    if seq <= len(EDGE_TEXTS) or random_() < 0.3:
        fields["notes"] = _note(seq, draw)
    if random_() < 0.2:
        fields["external_ref"] = _external_ref(draw)
    if random_() < 0.15:
        # mostly booleans, but 0/1 from an older import: 1 is not True
        fields["opted_in"] = random_() < 0.5 if random_() < 0.8 else below(2)
    if random_() < 0.05:
        fields["referrer"] = {
            "name": name, "contact": {"email": "", "phones": [], "whatsapp": None},
            "meta": {"weight": 0.5, "verified": True,
                     "note": UNICODE_EDGES[below(len(UNICODE_EDGES))]},
        }


def _form_answers(fields: dict[str, object], wide_keys: list[str], draw: _Draw) -> None:
    """A wide account's lead answers most questions of one form of `FORM_SIZE` keys."""
    forms = -(-len(wide_keys) // FORM_SIZE)
    if not forms:
        return
    below, random_ = draw.below, draw.chance
    first_key = below(forms) * FORM_SIZE
    for number in range(first_key, min(first_key + FORM_SIZE, len(wide_keys))):
        if random_() < FORM_FILL:
            fields[wide_keys[number]] = _wide_value(number % 7, below, random_)


def lead_rows(count: int, seed: int, pipelines: list[Pipeline],
              anchor_ms: int, custom_keys: int = 0) -> Iterator[tuple[object, ...]]:
    """Rows in the order of store.LEAD_COLUMNS, tags as a JSON list.

    Startup time at 1M leads is this loop, so it calls the RNG's primitives directly:
    `below(n)` is what `rng.choice`/`randrange`/`randint` reduce to (`randint(a, b)` is
    `a + below(b - a + 1)`), and `_weighted`/`_sampler` repeat `choices`/`sample`, so a
    seed yields exactly the rows the plain calls gave (same digest of 30k rows).

    `custom_keys` makes a wide account: each lead also answers most questions of one
    form of `FORM_SIZE` keys out of `custom_keys` (drawn after the lead's other fields,
    so without it the rows are those of narrow accounts).
    """
    rng = random.Random(seed)
    timeline = _Timeline.of(rng, anchor_ms, count)
    pipeline_stages = [(p.id, [s.id for s in p.stages]) for p in pipelines]
    people = _people()
    draw = _Draw.of(rng)
    below, random_, sample = draw.below, draw.chance, draw.sample
    dumps = orjson.dumps
    wide_keys = wide_custom_keys(custom_keys)
    for seq in range(1, count + 1):
        name, email = _person(people, seq, draw)
        created, updated, deleted = timeline.times(draw)
        pipeline_id, stage_id = _placement(pipeline_stages, draw)
        score = None if random_() < 0.15 else below(101)
        tags = sample(TAGS, below(5))
        phone = None if random_() < 0.2 else f"+91{7_000_000_000 + below(3_000_000_000)}"
        company = _company(draw)
        lead_status = draw.status()
        lead_source = draw.source()
        fields = _account_fields(draw)
        _edge_fields(fields, seq, name, draw)
        _form_answers(fields, wide_keys, draw)
        yield (seq, encode_id(ID_PREFIX_LEAD, seq), name, email, phone, company, lead_status,
               lead_source, score, pipeline_id, stage_id, dumps(fields).decode(),
               dumps(tags).decode(), created, updated, deleted)
