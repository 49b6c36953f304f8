"""DHIS2 filter, order and queryString translation, run on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from messaging.query import (
    Filter,
    Kind,
    Order,
    Property,
    QueryError,
    order_clauses,
    parse_filters,
    parse_order,
    query_tokens,
    text_match,
    where_clause,
)

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"

metadata = MetaData()
docs = Table(
    "docs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(11), nullable=False),
    Column("subject", Text),
    Column("read", Boolean, nullable=False),
    Column("n", Integer),
    Column("created", DateTime, nullable=False),
    Column("kind", String(16), nullable=False),
)
_inner = docs.alias("inner_docs")

KINDS = frozenset({"PRIVATE", "TICKET", "SYSTEM"})
PROPS = {
    "id": Property(docs.c.uid, Kind.STRING),
    "subject": Property(docs.c.subject, Kind.STRING),
    "read": Property(docs.c.read, Kind.BOOLEAN),
    "n": Property(docs.c.n, Kind.INTEGER),
    "created": Property(docs.c.created, Kind.DATETIME),
    "kind": Property(docs.c.kind, Kind.ENUM, KINDS),
    # A correlated scalar subquery, as the service uses for per-user or joined values.
    "shadow.subject": Property(
        select(_inner.c.subject).where(_inner.c.id == docs.c.id).scalar_subquery(),
        Kind.STRING,
        sortable=False,
    ),
}

ROWS: list[dict[str, Any]] = [
    {"uid": "a1", "subject": "Malaria report 100% done", "read": False, "n": 1, "kind": "PRIVATE"},
    {"uid": "b2", "subject": "Mamadou TRAORÉ visit", "read": True, "n": 2, "kind": "TICKET"},
    {"uid": "c3", "subject": "São Tomé: stock_out alert", "read": False, "n": 3, "kind": "SYSTEM"},
    {"uid": "d4", "subject": "ségou follow-up (urgent)", "read": True, "n": None, "kind": "TICKET"},
    {"uid": "e5", "subject": None, "read": False, "n": 5, "kind": "PRIVATE"},
    {"uid": "f6", "subject": "", "read": True, "n": 6, "kind": "SYSTEM"},
    {"uid": "g7", "subject": "malaria weekly 100x stockout", "read": False, "n": 7, "kind": "PRIVATE"},
    {"uid": "h8", "subject": "Report_2024 in Ségou", "read": True, "n": 8, "kind": "TICKET"},
]
for day, row in enumerate(ROWS, start=1):
    row["id"] = day
    row["created"] = datetime(2024, 5, day, 10, 0, 0)
ALL = {row["uid"] for row in ROWS}


def _sqlite_engine() -> Engine:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _case_sensitive_like(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA case_sensitive_like=ON")

    return engine


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A database holding the toy `docs` table, on each dialect."""
    if request.param == "sqlite":
        eng = _sqlite_engine()
        metadata.create_all(eng)
        with eng.begin() as conn:
            conn.execute(docs.insert(), ROWS)
        yield eng
        eng.dispose()
        return
    name = f"fq_{uuid.uuid4().hex[:16]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is required for these tests and is unreachable: {exc}")
    eng = create_engine(f"{PG_SERVER}/{name}")
    try:
        metadata.create_all(eng)
        with eng.begin() as conn:
            conn.execute(docs.insert(), ROWS)
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def uids(engine: Engine, *filters: str, junction: str = "AND") -> set[str]:
    """The uids of the docs matching the filter strings."""
    clause = where_clause(PROPS, parse_filters(filters), junction)
    query = select(docs.c.uid)
    if clause is not None:
        query = query.where(clause)
    with engine.connect() as conn:
        return set(conn.scalars(query))


def ordered(engine: Engine, *orders: str) -> list[str]:
    """The uids of all docs in the requested order (uid breaks ties)."""
    query = select(docs.c.uid).order_by(*order_clauses(PROPS, parse_order(orders)), docs.c.uid)
    with engine.connect() as conn:
        return list(conn.scalars(query))


def searched(engine: Engine, op: str, q: str) -> set[str]:
    """The uids whose subject matches the queryString `q` with operator `op`."""
    with engine.connect() as conn:
        return set(conn.scalars(select(docs.c.uid).where(text_match(docs.c.subject, op, q))))


# --- parsing -------------------------------------------------------------------------


def test_parse_filters_keeps_colons_inside_the_value() -> None:
    assert parse_filters(["created:gt:2024-05-01T10:11:12", "subject:eq:a:b"]) == [
        Filter("created", "gt", "2024-05-01T10:11:12"),
        Filter("subject", "eq", "a:b"),
    ]


def test_parse_filters_gives_null_and_empty_operators_no_value() -> None:
    assert parse_filters(["subject:null", "subject:!empty:ignored", "subject:eq:"]) == [
        Filter("subject", "null", None),
        Filter("subject", "!empty", None),
        Filter("subject", "eq", ""),
    ]


@pytest.mark.parametrize("raw", ["subject", "subject:", ":eq:x", ""])
def test_parse_filters_rejects_a_filter_without_property_and_operator(raw: str) -> None:
    with pytest.raises(QueryError, match="Invalid filter"):
        parse_filters([raw])


def test_parse_order_reads_commas_repeats_directions_and_bare_paths() -> None:
    assert parse_order(["created:desc, subject:iasc", "n", "id:IDESC,"]) == [
        Order("created", True, False),
        Order("subject", False, True),
        Order("n", False, False),
        Order("id", True, True),
    ]


@pytest.mark.parametrize("raw", ["subject:sideways", ":desc"])
def test_parse_order_rejects_an_unknown_direction_or_a_missing_path(raw: str) -> None:
    with pytest.raises(QueryError, match="Invalid order"):
        parse_order([raw])


def test_query_tokens_split_on_anything_but_letters_and_digits() -> None:
    assert query_tokens("São Tomé: stock_out-2024!") == ["São", "Tomé", "stock", "out", "2024"]


# --- comparison operators ------------------------------------------------------------


def test_eq_compares_exactly_and_is_case_sensitive(engine: Engine) -> None:
    assert uids(engine, "id:eq:b2") == {"b2"}
    assert uids(engine, "subject:eq:mamadou traoré visit") == set()
    assert uids(engine, "subject:eq:") == {"f6"}


@pytest.mark.parametrize("op", ["!eq", "ne", "neq"])
def test_every_not_equal_spelling_selects_the_other_rows_including_nulls(engine: Engine, op: str) -> None:
    assert uids(engine, f"n:{op}:2") == ALL - {"b2"}
    assert "e5" in uids(engine, f"subject:{op}:x")


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("gt", {"g7", "h8"}),
        ("ge", {"f6", "g7", "h8"}),
        ("gte", {"f6", "g7", "h8"}),
        ("lt", {"a1", "b2"}),
        ("le", {"a1", "b2", "c3"}),
        ("lte", {"a1", "b2", "c3"}),
    ],
)
def test_ordering_comparisons_on_integers_skip_nulls(engine: Engine, op: str, expected: set[str]) -> None:
    threshold = "6" if op.startswith("g") else "3"
    assert uids(engine, f"n:{op}:{threshold}") == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-07",
        "2024-05-07T00:00:00",
        "2024-05-07T00:00:00.000",
        "2024-05-07T00:00:00Z",
        "2024-05-07T02:00:00+02:00",
    ],
)
def test_datetime_filters_accept_iso_forms_compared_as_naive_utc(engine: Engine, value: str) -> None:
    assert uids(engine, f"created:gt:{value}") == {"g7", "h8"}


def test_datetime_eq_matches_the_exact_instant(engine: Engine) -> None:
    assert uids(engine, "created:eq:2024-05-02T10:00:00") == {"b2"}


@pytest.mark.parametrize(("yes", "no"), [("true", "false"), ("TRUE", "FALSE"), ("True", "fAlSe")])
def test_boolean_filters_accept_true_and_false_in_any_case(engine: Engine, yes: str, no: str) -> None:
    assert uids(engine, f"read:eq:{yes}") == {"b2", "d4", "f6", "h8"}
    assert uids(engine, f"read:eq:{no}") == {"a1", "c3", "e5", "g7"}


def test_enum_filters_accept_known_values(engine: Engine) -> None:
    assert uids(engine, "kind:eq:TICKET") == {"b2", "d4", "h8"}
    assert uids(engine, "kind:in:[SYSTEM,PRIVATE]") == {"a1", "c3", "e5", "f6", "g7"}


def test_in_and_not_in_take_a_bracketed_list(engine: Engine) -> None:
    assert uids(engine, "id:in:[a1,c3,zz]") == {"a1", "c3"}
    assert uids(engine, "n:in:[1, 2]") == {"a1", "b2"}
    assert uids(engine, "n:!in:[1,2]") == ALL - {"a1", "b2"}


def test_null_and_not_null(engine: Engine) -> None:
    assert uids(engine, "subject:null") == {"e5"}
    assert uids(engine, "n:null") == {"d4"}
    assert uids(engine, "subject:!null") == ALL - {"e5"}


def test_empty_means_null_or_empty_text(engine: Engine) -> None:
    assert uids(engine, "subject:empty") == {"e5", "f6"}
    assert uids(engine, "subject:!empty") == ALL - {"e5", "f6"}
    assert uids(engine, "n:empty") == {"d4"}


# --- like / ilike --------------------------------------------------------------------


def test_like_is_a_case_sensitive_contains(engine: Engine) -> None:
    assert uids(engine, "subject:like:alaria") == {"a1", "g7"}
    assert uids(engine, "subject:like:Malaria") == {"a1"}
    assert uids(engine, "subject:like:traoré") == set()


def test_ilike_is_a_case_insensitive_contains_even_for_accented_letters(engine: Engine) -> None:
    assert uids(engine, "subject:ilike:MALARIA") == {"a1", "g7"}
    assert uids(engine, "subject:ilike:traoré") == {"b2"}
    assert uids(engine, "subject:ilike:SÉGOU") == {"d4", "h8"}


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("subject:$like:Malaria", {"a1"}),
        ("subject:$like:malaria", {"g7"}),
        ("subject:like$:Ségou", {"h8"}),
        ("subject:$ilike:MALARIA", {"a1", "g7"}),
        ("subject:ilike$:SÉGOU", {"h8"}),
        ("subject:ilike$:(URGENT)", {"d4"}),
        ("subject:!$ilike:malaria", ALL - {"a1", "g7"}),
        ("subject:!ilike$:ségou", ALL - {"h8"}),
        ("subject:!$like:Malaria", ALL - {"a1"}),
        ("subject:!like$:visit", ALL - {"b2"}),
    ],
)
def test_start_and_end_variants_anchor_the_match(engine: Engine, filter_: str, expected: set[str]) -> None:
    assert uids(engine, filter_) == expected


@pytest.mark.parametrize("op", ["like", "ilike"])
def test_percent_and_underscore_in_the_value_match_only_themselves(engine: Engine, op: str) -> None:
    assert uids(engine, f"subject:{op}:100%") == {"a1"}
    assert uids(engine, f"subject:{op}:k_o") == {"c3"}
    assert uids(engine, f"subject:{op}:a_i") == set()
    assert uids(engine, f"subject:{op}:%") == {"a1"}
    assert uids(engine, f"subject:{op}:_") == {"c3", "h8"}


def test_ilike_treats_regex_metacharacters_literally(engine: Engine) -> None:
    assert uids(engine, "subject:ilike:(urgent)") == {"d4"}
    assert uids(engine, "subject:ilike:.*") == set()
    assert uids(engine, "subject:ilike:w[") == set()


@pytest.mark.parametrize("op", ["!like", "!ilike"])
def test_negated_like_includes_rows_without_a_value(engine: Engine, op: str) -> None:
    expected = ALL - {"g7"} if op == "!like" else ALL - {"a1", "g7"}
    assert uids(engine, f"subject:{op}:malaria") == expected
    assert "e5" in expected


def test_the_empty_string_is_contained_in_every_text(engine: Engine) -> None:
    assert uids(engine, "subject:ilike:") == ALL - {"e5"}
    assert uids(engine, "subject:like:") == ALL - {"e5"}


# --- token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mal", {"a1", "g7"}),
        ("alaria", set()),
        ("malaria rep", {"a1"}),
        ("rep malaria", {"a1"}),
        ("traore", set()),
        ("traoré", {"b2"}),
        ("TRAO", {"b2"}),
        ("tom", {"c3"}),
        ("SÃO TOMÉ", {"c3"}),
        ("são:tomé!", {"c3"}),
        ("out", {"c3"}),
        ("stock", {"c3", "g7"}),
        ("stock_out", {"c3"}),
        ("gou", set()),
        ("ségou", {"d4", "h8"}),
        ("urgent", {"d4"}),
        ("2024", {"h8"}),
        ("100 done", {"a1"}),
        ("100%", {"a1", "g7"}),
        ("visit zzz", set()),
    ],
)
def test_token_needs_every_query_token_to_start_a_word_of_the_value(
    engine: Engine, query: str, expected: set[str]
) -> None:
    assert searched(engine, "token", query) == expected
    assert uids(engine, f"subject:token:{query}") == expected


@pytest.mark.parametrize("query", ["", "   ", "?!", "."])
def test_a_token_query_without_tokens_matches_everything(engine: Engine, query: str) -> None:
    assert searched(engine, "token", query) == ALL
    assert searched(engine, "!token", query) == set()


def test_token_treats_regex_metacharacters_as_separators(engine: Engine) -> None:
    assert searched(engine, "token", "(urg.*") == {"d4"}
    assert searched(engine, "token", "[s]|x\\") == set()
    assert searched(engine, "token", "ma^lar+ia") == set()


def test_not_token_is_the_exact_complement_of_token(engine: Engine) -> None:
    assert searched(engine, "!token", "malaria") == ALL - {"a1", "g7"}
    assert uids(engine, "subject:!token:ségou") == ALL - {"d4", "h8"}


def test_token_works_on_a_scalar_subquery_property(engine: Engine) -> None:
    assert uids(engine, "shadow.subject:token:tra") == {"b2"}
    assert uids(engine, "shadow.subject:!null") == ALL - {"e5"}


# --- queryString operators -----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "query", "expected"),
    [
        ("like", "Malaria", {"a1"}),
        ("ilike", "malaria", {"a1", "g7"}),
        ("$like", "malaria", {"g7"}),
        ("like$", "visit", {"b2"}),
        ("$ilike", "mamadou", {"b2"}),
        ("ilike$", "ségou", {"h8"}),
        ("eq", "", {"f6"}),
        ("ne", "", ALL - {"f6"}),
        ("!ilike", "a", {"d4", "e5", "f6", "h8"}),
    ],
)
def test_text_match_supports_the_queryString_operators(
    engine: Engine, op: str, query: str, expected: set[str]
) -> None:
    assert searched(engine, op, query) == expected


def test_text_match_rejects_an_unknown_operator() -> None:
    with pytest.raises(QueryError, match="`fuzzy` is not a valid operator"):
        text_match(docs.c.subject, "fuzzy", "x")


# --- junction ------------------------------------------------------------------------


def test_filters_are_anded_by_default(engine: Engine) -> None:
    assert uids(engine, "kind:eq:TICKET", "read:eq:true", "n:gt:2") == {"h8"}


@pytest.mark.parametrize("junction", ["OR", "or"])
def test_the_or_junction_joins_filters_with_or(engine: Engine, junction: str) -> None:
    assert uids(engine, "id:eq:a1", "subject:token:ségou", junction=junction) == {"a1", "d4", "h8"}


def test_no_filters_give_no_where_clause() -> None:
    assert where_clause(PROPS, [], "OR") is None


def test_an_unknown_junction_is_an_error() -> None:
    with pytest.raises(QueryError, match="rootJunction"):
        where_clause(PROPS, [], "XOR")


# --- order ---------------------------------------------------------------------------


def test_order_iasc_ignores_case_where_asc_does_not(engine: Engine) -> None:
    ascending = ordered(engine, "subject:asc")
    assert ascending.index("h8") < ascending.index("g7")  # "Report" < "malaria"
    insensitive = ordered(engine, "subject:iasc")
    assert insensitive.index("g7") < insensitive.index("h8")
    assert insensitive[:3] == ["f6", "a1", "g7"]  # "" first, then "malaria..." twice
    assert insensitive[-1] == "e5"  # NULL last when ascending, on both dialects


def test_order_idesc_reverses_iasc_with_nulls_first(engine: Engine) -> None:
    assert ordered(engine, "subject:idesc")[0] == "e5"
    assert ordered(engine, "subject:idesc")[1:] == list(reversed(ordered(engine, "subject:iasc")[:-1]))


def test_order_by_several_keys(engine: Engine) -> None:
    assert ordered(engine, "kind:asc,n:desc") == ["g7", "e5", "a1", "f6", "c3", "d4", "h8", "b2"]
    assert ordered(engine, "read", "created:desc") == ["g7", "e5", "c3", "a1", "h8", "f6", "d4", "b2"]


def test_no_order_gives_no_clauses() -> None:
    assert order_clauses(PROPS, []) == []


def test_ordering_by_an_unknown_property_is_an_error() -> None:
    with pytest.raises(QueryError, match="Unknown path property: nope"):
        order_clauses(PROPS, parse_order(["nope:desc"]))


def test_ordering_by_a_non_sortable_property_is_an_error() -> None:
    with pytest.raises(QueryError, match=r"shadow\.subject"):
        order_clauses(PROPS, parse_order(["shadow.subject"]))


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ("nope:eq:1", "Unknown path property: nope"),
        ("subject:between:1", "`between` is not a valid operator."),
        ("read:eq:maybe", "Unable to parse `maybe`"),
        ("created:gt:notadate", "Unable to parse `notadate`"),
        ("n:lt:1.5", "Unable to parse `1.5`"),
        ("kind:eq:ticket", "Unable to parse `ticket`"),
        ("kind:in:[TICKET,NOPE]", "Unable to parse `NOPE`"),
        ("n:in:[]", "Invalid argument `[]` for in operator"),
        ("read:like:tr", "not text"),
        ("created:token:2024", "not text"),
        ("subject:eq", "needs a value"),
        ("subject:like:a\x00b", "NUL"),
    ],
)
def test_bad_filters_raise_a_query_error_with_a_user_facing_message(filter_: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        where_clause(PROPS, parse_filters([filter_]))
    assert message in caught.value.message
    assert isinstance(caught.value, ValueError)


def test_the_property_is_checked_before_the_operator() -> None:
    with pytest.raises(QueryError, match="Unknown path property: nope"):
        where_clause(PROPS, [Filter("nope", "between", "1")])


def test_repeated_use_of_a_cached_statement_binds_fresh_values(engine: Engine) -> None:
    for query, expected in [("traoré", {"b2"}), ("ségou", {"d4", "h8"}), ("mal rep", {"a1"})]:
        assert uids(engine, f"subject:token:{query}") == expected
        assert uids(engine, f"subject:ilike:{query}") == (expected if " " not in query else set())
