"""Deterministic synthetic CRM data: the same seed always gives the same ids, names and times.

Times are laid out relative to an anchor (the start of the current UTC day), not the
real clock, so two sandboxes started on the same day with the same seed hold identical
data, while changes made later (API writes, churn) carry real, later timestamps.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from leadrat_source.contract import ID_PREFIX_LEAD, ID_PREFIX_PIPELINE, ID_PREFIX_STAGE
from leadrat_source.sandbox.clock import DAY_MS

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

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
PIPELINE_NAMES = ("Sales", "Enterprise", "Partners", "Renewals", "Onboarding", "Rentals")
STAGE_NAMES = ("New", "Contacted", "Site visit", "Qualified", "Negotiation", "Won")

HISTORY_DAYS = 730
#: Deleted leads stay visible for 30 days; synthetic deletions stay inside that.
DELETED_WITHIN_DAYS = 29


def encode_id(prefix: str, number: int) -> str:
    """ULID-looking, fixed-width ids, so string order equals number order."""
    chars = []
    for _ in range(8):
        number, digit = divmod(number, 32)
        chars.append(CROCKFORD[digit])
    return f"{prefix}01{''.join(reversed(chars))}"


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


def _custom_fields(rng: random.Random) -> dict[str, object]:
    """Each key keeps one JSON type across leads; many leads lack some keys."""
    fields: dict[str, object] = {}
    if rng.random() < 0.6:
        fields["budget"] = round(rng.uniform(20_000, 2_000_000), 2)
    if rng.random() < 0.5:
        fields["employees"] = rng.randint(1, 5000)
    if rng.random() < 0.5:
        fields["industry"] = rng.choice(INDUSTRIES)
    if rng.random() < 0.4:
        fields["newsletter"] = rng.random() < 0.5
    if rng.random() < 0.35:
        city, country = rng.choice(CITIES)
        fields["address"] = {"city": city, "country": country, "floor": rng.randint(0, 40)}
    if rng.random() < 0.3:
        fields["interests"] = rng.sample(INTERESTS, rng.randint(1, 3))
    return fields


def lead_rows(count: int, seed: int, pipelines: list[Pipeline],
              anchor_ms: int) -> Iterator[tuple[object, ...]]:
    """Rows in the order of store.LEAD_COLUMNS, tags as a JSON list."""
    rng = random.Random(seed)
    start = anchor_ms - HISTORY_DAYS * DAY_MS
    span = HISTORY_DAYS * DAY_MS
    # Bulk imports and mass updates: many leads share one updated_at millisecond.
    clusters = sorted(start + rng.randrange(span) for _ in range(max(3, count // 150)))
    pipeline_stages = [(p.id, [s.id for s in p.stages]) for p in pipelines]
    random_ = rng.random
    choice = rng.choice
    dumps = orjson.dumps
    for seq in range(1, count + 1):
        first, last = choice(FIRST_NAMES), choice(LAST_NAMES)
        local = ascii_slug(first) + "." + ascii_slug(last) if ascii_slug(first + last) else "user"
        email = f"{local.strip('.')}.{seq}@{choice(DOMAINS)}"
        created = start + rng.randrange(span)
        kind = random_()
        if kind < 0.3:
            updated = created
        elif kind < 0.7:
            updated = created + rng.randrange(anchor_ms - created)
        else:
            updated = choice(clusters)
            created = min(created, updated - rng.randrange(30 * DAY_MS))
        deleted = None
        if random_() < 0.03:
            deleted = anchor_ms - 1 - rng.randrange(DELETED_WITHIN_DAYS * DAY_MS)
            created = min(created, deleted - rng.randrange(1, 60 * DAY_MS))
            updated = deleted
        pipeline_id = stage_id = None
        if random_() < 0.85:
            pipeline_id, stage_ids = choice(pipeline_stages)
            stage_id = choice(stage_ids)
        score = None if random_() < 0.15 else rng.randint(0, 100)
        tags = rng.sample(TAGS, rng.randint(0, 4))
        yield (
            seq,
            encode_id(ID_PREFIX_LEAD, seq),
            f"{first} {last}",
            email,
            None if random_() < 0.2 else f"+91{rng.randint(7_000_000_000, 9_999_999_999)}",
            None if random_() < 0.3 else choice(COMPANIES),
            rng.choices(STATUSES, STATUS_WEIGHTS)[0],
            rng.choices(SOURCES, SOURCE_WEIGHTS)[0],
            score,
            pipeline_id,
            stage_id,
            dumps(_custom_fields(rng)).decode(),
            dumps(tags).decode(),
            created,
            updated,
            deleted,
        )
