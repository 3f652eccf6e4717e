"""Property tests for every mapper.

1. Round trip: unified -> Kustomer body -> (what a Kustomer-like server returns) -> unified gives the
   original back, for the fields the mapping carries. Lossy fields are excluded explicitly, per model:

   * every model: ``id``, ``created_at``, ``updated_at``, ``raw`` (read-only, server-assigned);
   * names: ``first_name`` is one word and ``last_name`` only set with a first name (``name`` is split
     on its first whitespace: ``"Mary Ann" + "Smith"`` reads back as ``"Mary" + "Ann Smith"``);
   * genericContact: ``email``/``phone`` are generated as the first entry of ``emails``/``phones`` (they
     *are* that entry on read); genericUser: ``roles`` (read-only) and ``custom_fields`` (users have
     none); genericWorkspace: ``custom_fields`` (teams have none);
   * crmEngagement (conversation): ``type`` only ``call``/``email`` (other types have no channel),
     ``status`` never ``canceled`` (reads back ``completed``), ``description``/``started_at``/
     ``ended_at``/``duration`` are read-only (the server's ``createdAt`` is the original ``started_at``),
     and ``owner``/``users`` normalise to ``users = [owner] + users`` deduplicated, ``owner = users[0]``;
   * crmEngagement (note): only ``description`` and ``contacts`` are written; the rest reads back as a
     note's constants;
   * custom fields: ``At`` values with millisecond precision (Kustomer's), integral ``Num`` floats read
     back as ints (equal in Python).

2. Robustness: arbitrary Kustomer-shaped JSON (missing, null, extra and wrongly typed attributes and
   relationships) either maps or raises a ``MappingError`` naming the field, never another exception.
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime
from typing import Any

import kustomer_payloads as kp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import MappingError
from connectors.kustomer.custom_fields import format_datetime
from connectors.kustomer.klasses import DEFAULT_KLASS_SCHEMAS
from connectors.kustomer.mappers import (
    CompanyMapper,
    ContactMapper,
    CustomObjectMapper,
    EngagementMapper,
    OpportunityMapper,
    PipelineMapper,
    StageMapper,
    UserMapper,
    WorkspaceMapper,
)
from connectors.kustomer.mappers._common import KustomerMapper
from unified_models import (
    Company,
    Contact,
    CustomObject,
    Email,
    Engagement,
    Opportunity,
    Phone,
    Pipeline,
    Stage,
    UnifiedResource,
    User,
    Workspace,
    partial,
    ref,
)

ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
READ_ONLY = {"id", "created_at", "updated_at", "raw"}
ENGAGEMENT_SETTINGS = {
    "engagement": {"companies_attribute": "companiesId", "opportunities_attribute": "opportunitiesId"}
}

# --- value strategies ----------------------------------------------------------------------------------

hexid = st.text("0123456789abcdef", min_size=24, max_size=24)
word = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=10)
phrase = st.lists(word, min_size=1, max_size=3).map(" ".join)
ascii_word = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
email = st.builds(
    lambda a, b, c: f"{a}@{b}.{c}",
    ascii_word,
    ascii_word,
    st.text(string.ascii_lowercase, min_size=2, max_size=4),
)
phone = st.from_regex(r"\+?[0-9]{3,15}", fullmatch=True)
kind = st.none() | st.sampled_from(["home", "work", "other", "mobile"])
emails = st.lists(st.builds(Email, type=kind, value=email), max_size=3)
phones = st.lists(st.builds(Phone, type=kind, value=phone), max_size=3)
tags = st.lists(phrase, max_size=3)
ms_datetimes = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)
)
finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.tuples(st.none(), st.none()) | st.tuples(word, st.none() | phrase)

_CUSTOM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "Str": st.text(max_size=40),
    "Txt": st.text(max_size=80),
    "Num": st.integers(min_value=-(2**53), max_value=2**53) | finite,
    "Bool": st.booleans(),
    "At": ms_datetimes,
    "Url": st.builds(lambda a, b: f"https://{a}.example.com/{b}", ascii_word, ascii_word),
    "Id": hexid | st.lists(hexid, max_size=3),
    "Tree": st.lists(word, min_size=1, max_size=3).map(" > ".join),
}


@st.composite
def custom_fields(draw: st.DrawFn, reserved: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        suffix = draw(st.sampled_from(sorted(_CUSTOM_VALUES)))
        name = draw(st.from_regex(r"[a-z][a-zA-Z0-9]{0,8}", fullmatch=True)) + suffix
        if name not in reserved:
            out[name] = draw(_CUSTOM_VALUES[suffix] | st.none())
    return out


def refs(model: str, *, max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(hexid.map(lambda i: ref(model, i)), max_size=max_size)


def one_ref(model: str) -> st.SearchStrategy[Any]:
    return st.none() | hexid.map(lambda i: ref(model, i))


# --- round trips ---------------------------------------------------------------------------------------


def round_trip(
    mapper: KustomerMapper[Any],
    model: str,
    obj: UnifiedResource,
    type_: str,
    *,
    settings: Any = None,
    **attrs: Any,
) -> Any:
    context = kp.ctx(model, settings=settings)
    body = mapper.to_provider(obj, context)
    resource = kp.respond(type_, body, kp.CUSTOMER_ID, **{"createdAt": kp.T0, "updatedAt": kp.T1, **attrs})
    return mapper.to_unified(resource, context)


def same(a: UnifiedResource, b: UnifiedResource, exclude: set[str] = READ_ONLY) -> None:
    assert a.model_dump(exclude=exclude) == b.model_dump(exclude=exclude)


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    first, last = draw(names)
    es, ps = draw(emails), draw(phones)
    return Contact(
        first_name=first,
        last_name=last,
        emails=es,
        email=es[0].value if es else None,
        phones=ps,
        phone=ps[0].value if ps else None,
        company=draw(one_ref("genericCompany")),
        external_id=draw(st.none() | phrase),
        tags=draw(tags),
        locale=draw(st.none() | st.sampled_from(["en-US", "fr-FR", "pt-BR"])),
        time_zone=draw(st.none() | st.sampled_from(["UTC", "Europe/Paris"])),
        custom_fields=draw(custom_fields()),
    )


@ROUND_TRIP
@given(contacts())
def test_contact_round_trip(obj: Contact) -> None:
    same(round_trip(ContactMapper(), "genericContact", obj, "customer"), obj)


@ROUND_TRIP
@given(
    st.builds(
        Company,
        name=phrase,
        domains=st.lists(st.builds(lambda a: f"{a}.example.com", ascii_word), max_size=3),
        external_id=st.none() | phrase,
        emails=emails,
        phones=phones,
        employee_count=st.none() | st.integers(0, 10**9),
        tags=tags,
        custom_fields=custom_fields(),
    )
)
def test_company_round_trip(obj: Company) -> None:
    same(round_trip(CompanyMapper(), "genericCompany", obj, "company"), obj)


@st.composite
def users(draw: st.DrawFn) -> User:
    first, last = draw(names)
    return User(
        first_name=first,
        last_name=last,
        email=draw(st.none() | email),
        display_name=draw(st.none() | phrase),
        user_type=draw(st.none() | st.sampled_from(["user", "machine", "limited", "hourly"])),
        roles=draw(st.lists(st.sampled_from(["org.user", "org.admin"]), max_size=2)),
    )


@ROUND_TRIP
@given(users())
def test_user_round_trip(obj: User) -> None:
    same(round_trip(UserMapper(), "genericUser", obj, "user"), obj, READ_ONLY | {"roles"})


@ROUND_TRIP
@given(st.builds(Workspace, name=phrase, display_name=st.none() | phrase, members=refs("genericUser")))
def test_workspace_round_trip(obj: Workspace) -> None:
    same(round_trip(WorkspaceMapper(), "genericWorkspace", obj, "team"), obj)


@st.composite
def conversations(draw: st.DrawFn) -> Engagement:
    return Engagement(
        type=draw(st.sampled_from(["call", "email"])),
        direction=draw(st.none() | st.sampled_from(["inbound", "outbound"])),
        status=draw(st.none() | st.sampled_from(["planned", "inProgress", "completed"])),
        title=draw(st.none() | phrase),
        started_at=draw(ms_datetimes),
        owner=draw(one_ref("genericUser")),
        users=draw(refs("genericUser", max_size=5)),
        contacts=[ref("genericContact", draw(hexid))],
        companies=draw(refs("genericCompany")),
        opportunities=draw(refs("crmOpportunity")),
        custom_fields=draw(custom_fields(frozenset({"companiesId", "opportunitiesId"}))),
    )


@ROUND_TRIP
@given(conversations())
def test_conversation_round_trip(obj: Engagement) -> None:
    back = round_trip(
        EngagementMapper(),
        "crmEngagement",
        obj,
        "conversation",
        settings=ENGAGEMENT_SETTINGS,
        createdAt=format_datetime(obj.started_at),
    )
    assigned = list(dict.fromkeys(([obj.owner] if obj.owner else []) + obj.users))
    expected = obj.model_copy(update={"owner": assigned[0] if assigned else None, "users": assigned})
    same(back, expected, READ_ONLY | {"description", "ended_at", "duration"})


@ROUND_TRIP
@given(phrase, st.lists(hexid.map(lambda i: ref("genericContact", i)), max_size=1), ms_datetimes)
def test_note_round_trip(description: str, contacts: list[Any], started: datetime) -> None:
    obj = Engagement(type="note", description=description, contacts=contacts, started_at=started, title="lost")
    back = round_trip(EngagementMapper(), "crmEngagement", obj, "note", createdAt=format_datetime(started))
    assert back.id == f"note:{kp.CUSTOMER_ID}"
    expected = Engagement(
        type="note", status="completed", description=description, contacts=contacts, started_at=started
    )
    same(back, expected)


def _schema_names(model: str) -> frozenset[str]:
    return DEFAULT_KLASS_SCHEMAS[model].attribute_names


@ROUND_TRIP
@given(
    st.builds(
        Opportunity,
        name=phrase,
        description=st.none() | phrase,
        amount=st.none() | finite,
        currency=st.none() | st.text(string.ascii_uppercase, min_size=3, max_size=3),
        stage=one_ref("crmStage"),
        pipeline=one_ref("crmPipeline"),
        owner=one_ref("genericUser"),
        contacts=refs("genericContact"),
        companies=refs("genericCompany"),
        engagements=refs("crmEngagement"),  # conversation ids only: notes cannot be referenced
        status=st.none() | st.sampled_from(["open", "won", "lost"]),
        close_date=st.none() | st.dates(min_value=date(1970, 1, 1), max_value=date(9999, 1, 1)),
        probability=st.none() | st.floats(0, 100),
        custom_fields=custom_fields(_schema_names("crmOpportunity")),
    )
)
def test_opportunity_round_trip(obj: Opportunity) -> None:
    same(round_trip(OpportunityMapper(), "crmOpportunity", obj, "kobject"), obj)


@ROUND_TRIP
@given(
    st.builds(
        Pipeline,
        name=phrase,
        stages=refs("crmStage"),
        custom_fields=custom_fields(_schema_names("crmPipeline")),
    )
)
def test_pipeline_round_trip(obj: Pipeline) -> None:
    same(round_trip(PipelineMapper(), "crmPipeline", obj, "kobject"), obj)


@ROUND_TRIP
@given(
    st.builds(
        Stage,
        name=phrase,
        type=st.sampled_from(["open", "won", "lost", "unknown"]),
        pipeline=one_ref("crmPipeline"),
        order=st.none() | st.integers(0, 10**6),
        probability=st.none() | st.floats(0, 100),
        custom_fields=custom_fields(_schema_names("crmStage")),
    )
)
def test_stage_round_trip(obj: Stage) -> None:
    same(round_trip(StageMapper(), "crmStage", obj, "kobject"), obj)


@ROUND_TRIP
@given(
    st.builds(
        lambda **kw: CustomObject(object_type="order", **kw),
        title=phrase,
        description=st.none() | phrase,
        external_id=st.none() | phrase,
        contact=one_ref("genericContact"),
        company=one_ref("genericCompany"),
        tags=tags,
        custom_fields=custom_fields(),
    )
)
def test_custom_object_round_trip(obj: CustomObject) -> None:
    same(round_trip(CustomObjectMapper(), "custom:order", obj, "kobject"), obj)


# --- robustness ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | finite | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """``good`` seven times out of eight, else ``bad`` (wrongly typed JSON), so deep paths get exercised."""
    return st.integers(0, 7).flatmap(lambda n: bad if n == 0 else good)


timestamps = st.sampled_from(
    [
        "2026-10-21T14:02:11.925Z",
        "2026-10-21",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-05:00",
        "later",
        "",
    ]
) | ms_datetimes.map(format_datetime)
entry = st.fixed_dictionaries(
    {},
    optional={
        "type": mostly(kind),
        "email": mostly(email),
        "phone": mostly(phone),
        "verified": mostly(st.booleans()),
    },
)
ids = mostly(hexid, st.just("") | json_values)
custom_names = st.from_regex(r"[a-z][a-zA-Z]{0,5}", fullmatch=True).flatmap(
    lambda base: st.sampled_from([*_CUSTOM_VALUES, "", "_x"]).map(lambda s: base + s)
)
custom_values = st.one_of(
    *_CUSTOM_VALUES.values(),
    json_values,
    timestamps,
    st.sampled_from(["12", "true", "1e3", "nan", "open", "won", "unknown"]),
)
known_custom = st.sampled_from(
    sorted({n for s in DEFAULT_KLASS_SCHEMAS.values() for n in s.attribute_names} | {"companiesId", "opportunitiesId"})
)

ATTRIBUTES: dict[str, st.SearchStrategy[Any]] = {
    key: mostly(good)
    for key, good in {
        "name": phrase,
        "title": phrase,
        "description": phrase,
        "body": phrase,
        "displayName": phrase,
        "email": email,
        "emails": st.lists(mostly(entry), max_size=3),
        "phones": st.lists(mostly(entry), max_size=3),
        "domains": st.lists(mostly(st.fixed_dictionaries({"domain": mostly(ascii_word)}) | ascii_word), max_size=3),
        "tags": st.lists(mostly(phrase), max_size=3),
        "roles": st.lists(mostly(word), max_size=2),
        "members": st.lists(ids, max_size=3),
        "assignedUsers": st.lists(ids, max_size=12),
        "channels": st.lists(mostly(st.sampled_from(["email", "voice", "chat"])), max_size=2),
        "replyChannel": st.sampled_from(["email", "voice", "sms"]),
        "status": st.sampled_from(["open", "snoozed", "done", "archived"]),
        "direction": st.sampled_from(["in", "out", "both"]),
        "userType": st.sampled_from(["user", "machine", "admin"]),
        "employeeCount": st.integers(-5, 10**6),
        "preview": phrase | st.fixed_dictionaries({"text": mostly(phrase)}),
        "company": ids,
        "customer": ids,
        "externalId": phrase,
        "locale": word,
        "timeZone": word,
        "createdAt": timestamps,
        "updatedAt": timestamps,
        "endedAt": timestamps,
        "lastDone": st.fixed_dictionaries({"createdAt": mostly(timestamps)}),
        "custom": st.dictionaries(custom_names | known_custom, custom_values, max_size=5),
    }.items()
}
identifier = st.fixed_dictionaries({"type": word, "id": ids})
relationship = mostly(
    st.fixed_dictionaries(
        {}, optional={"data": mostly(st.none() | identifier | st.lists(mostly(identifier), max_size=3))}
    )
)
resources = st.fixed_dictionaries(
    {"id": mostly(hexid)},
    optional={
        "type": mostly(st.sampled_from(["customer", "company", "user", "team", "conversation", "note", "kobject"])),
        "attributes": mostly(st.fixed_dictionaries({}, optional=ATTRIBUTES)),
        "relationships": mostly(
            st.dictionaries(
                st.sampled_from(["company", "customer", "createdBy", "assignedUsers", "members", "org"]),
                relationship,
                max_size=4,
            )
        ),
        "links": json_values,
        "extra": json_values,
    },
)
FUZZ_MAPPERS = [
    (ContactMapper(), "genericContact", None),
    (CompanyMapper(), "genericCompany", None),
    (UserMapper(), "genericUser", None),
    (WorkspaceMapper(), "genericWorkspace", None),
    (EngagementMapper(), "crmEngagement", None),
    (EngagementMapper(), "crmEngagement", ENGAGEMENT_SETTINGS),
    (OpportunityMapper(), "crmOpportunity", None),
    (PipelineMapper(), "crmPipeline", None),
    (StageMapper(), "crmStage", None),
    (CustomObjectMapper(), "custom:order", None),
]


def _maps_or_names_the_field(mapper: KustomerMapper[Any], model: str, resource: Any, settings: Any) -> None:
    error: MappingError | None = None
    try:
        obj = mapper.to_unified(resource, kp.ctx(model, settings=settings, include_raw=True))
    except MappingError as exc:
        error = exc
    else:
        assert isinstance(obj, mapper.unified_type)
    assert error is None or error.field, f"MappingError without a field: {error}"


@FUZZ
@given(st.sampled_from(FUZZ_MAPPERS), resources)
def test_arbitrary_json_maps_or_raises_mapping_error(case: Any, resource: dict[str, Any]) -> None:
    mapper, model, settings_ = case
    _maps_or_names_the_field(mapper, model, resource, settings_)
    _maps_or_names_the_field(mapper, model, {"data": resource}, settings_)


@FUZZ
@given(st.sampled_from(FUZZ_MAPPERS), resources)
def test_arbitrary_current_on_update_maps_or_raises_mapping_error(case: Any, current: dict[str, Any]) -> None:
    mapper, model, settings_ = case
    obj = partial(mapper.unified_type)()  # no fields set: only what current forces is written
    error: MappingError | None = None
    try:
        body = mapper.to_provider(obj, kp.ctx(model, settings=settings_, current=current))
    except MappingError as exc:
        error = exc
    else:
        assert isinstance(body, dict)
    assert error is None or error.field, f"MappingError without a field: {error}"
