"""genericCompany, genericUser and genericWorkspace."""

from __future__ import annotations

from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import MappingError
from connectors.kustomer.mappers import CompanyMapper, UserMapper, WorkspaceMapper
from unified_models import Company, Email, Phone, User, Workspace, partial, ref

CO = CompanyMapper()
US = UserMapper()
WS = WorkspaceMapper()


# --- company -----------------------------------------------------------------------------------------


def test_read_company(company: dict[str, Any]) -> None:
    c = CO.to_unified(company, kp.ctx("genericCompany"))
    assert c.id == kp.COMPANY_ID
    assert c.name == "Analytical Engines Ltd"
    assert c.domains == ["analytical.example.com", "engines.example.org"]
    assert c.external_id == "acct-42"
    assert c.emails == [Email(type="work", value="hello@analytical.example.com")]
    assert c.phones == [Phone(type="work", value="+442071234567")]
    assert c.employee_count == 250
    assert c.tags == ["enterprise"]
    assert c.custom_fields["arrNum"] == 120000


def test_company_domains_accept_strings_and_skip_blanks(company: dict[str, Any]) -> None:
    company["attributes"]["domains"] = [
        "a.example.com",
        {"domain": None},
        {},
        "",
        {"domain": "b.example.com"},
    ]
    assert CO.to_unified(company, kp.ctx("genericCompany")).domains == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a.pop("name"), "attributes.name"),
        (lambda a: a.update(name=""), "attributes.name"),
        (lambda a: a.update(employeeCount=-3), "attributes.employeeCount"),
        (lambda a: a.update(employeeCount=2.5), "attributes.employeeCount"),
        (lambda a: a.update(domains=[{"domain": 5}]), "attributes.domains.0"),
        (lambda a: a.update(domains="example.com"), "attributes.domains"),
        (lambda a: a["emails"].append({"email": "nope"}), "attributes.emails.1.email"),
    ],
)
def test_company_errors(company: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(company["attributes"])
    with pytest.raises(MappingError) as info:
        CO.to_unified(company, kp.ctx("genericCompany"))
    assert info.value.field == field


def test_write_company() -> None:
    body = CO.to_provider(
        Company(
            name="Acme",
            domains=["acme.example.com"],
            external_id="a-1",
            emails=[Email(type="work", value="hi@acme.example.com")],
            phones=[Phone(value="+15550100")],
            employee_count=12,
            tags=["smb"],
            custom_fields={"industryStr": "Retail"},
        ),
        kp.ctx("genericCompany"),
    )
    assert body == {
        "name": "Acme",
        "externalId": "a-1",
        "employeeCount": 12,
        "tags": ["smb"],
        "domains": [{"domain": "acme.example.com"}],
        "emails": [{"type": "work", "email": "hi@acme.example.com"}],
        "phones": [{"phone": "+15550100"}],
        "custom": {"industryStr": "Retail"},
    }


def test_partial_company_update(company: dict[str, Any]) -> None:
    body = CO.to_provider(partial(Company)(employee_count=300), kp.ctx("genericCompany", current=company))
    assert body == {"employeeCount": 300}


# --- user --------------------------------------------------------------------------------------------


def test_read_user(user: dict[str, Any]) -> None:
    u = US.to_unified(user, kp.ctx("genericUser"))
    assert (u.first_name, u.last_name) == ("Grace", "Brewster Hopper")
    assert u.email == "grace@support.example.com"
    assert u.display_name == "Grace"
    assert u.user_type == "user"
    assert u.roles == ["org.user", "org.permission.customer.read"]
    assert u.custom_fields == {}


def test_user_custom_attributes_are_ignored_on_read(user: dict[str, Any]) -> None:
    user["attributes"]["custom"] = {"xStr": "y"}
    assert US.to_unified(user, kp.ctx("genericUser")).custom_fields == {}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a.update(email="grace"), "attributes.email"),
        (lambda a: a.update(userType="admin"), "attributes.userType"),
        (lambda a: a.update(roles="org.user"), "attributes.roles"),
        (lambda a: a.update(roles=["org.user", 1]), "attributes.roles.1"),
        (lambda a: a.update(displayName=3), "attributes.displayName"),
    ],
)
def test_user_errors(user: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(user["attributes"])
    with pytest.raises(MappingError) as info:
        US.to_unified(user, kp.ctx("genericUser"))
    assert info.value.field == field


def test_write_user_never_writes_roles(user: dict[str, Any]) -> None:
    u = US.to_unified(user, kp.ctx("genericUser"))
    assert US.to_provider(u, kp.ctx("genericUser")) == {
        "name": "Grace Brewster Hopper",
        "email": "grace@support.example.com",
        "displayName": "Grace",
        "userType": "user",
    }
    assert US.to_provider(User(roles=["org.admin"], display_name="G"), kp.ctx("genericUser")) == {"displayName": "G"}


def test_partial_user_name_uses_current(user: dict[str, Any]) -> None:
    body = US.to_provider(partial(User)(last_name="Hopper"), kp.ctx("genericUser", current=user))
    assert body == {"name": "Grace Hopper"}


def test_users_have_no_custom_attributes() -> None:
    with pytest.raises(MappingError, match="users have no custom attributes") as info:
        US.to_provider(User(first_name="G", custom_fields={"xStr": "y"}), kp.ctx("genericUser"))
    assert info.value.field == "customFields"
    assert US.to_provider(User(first_name="G", custom_fields={}), kp.ctx("genericUser")) == {"name": "G"}


# --- workspace ---------------------------------------------------------------------------------------


def test_read_team(team: dict[str, Any]) -> None:
    w = WS.to_unified(team, kp.ctx("genericWorkspace"))
    assert w.name == "tier-2"
    assert w.display_name == "Tier 2 support"
    assert w.members == [ref("genericUser", kp.USER_ID), ref("genericUser", kp.USER2_ID)]


def test_team_members_from_relationships(team: dict[str, Any]) -> None:
    del team["attributes"]["members"]
    team["relationships"]["members"] = {"data": [{"type": "user", "id": kp.USER2_ID}, {"type": "user", "id": ""}]}
    assert WS.to_unified(team, kp.ctx("genericWorkspace")).members == [ref("genericUser", kp.USER2_ID)]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda t: t["attributes"].update(members=[kp.USER_ID, 5]), "attributes.members.1"),
        (lambda t: t["attributes"].update(members=kp.USER_ID), "attributes.members"),
        (lambda t: t["attributes"].update(name=None), "attributes.name"),
        (
            lambda t: (
                t["attributes"].pop("members"),
                t["relationships"].update(members={"data": [{"id": 1}]}),
            ),
            "relationships.members.data.0.id",
        ),
    ],
)
def test_team_errors(team: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(team)
    with pytest.raises(MappingError) as info:
        WS.to_unified(team, kp.ctx("genericWorkspace"))
    assert info.value.field == field


def test_write_team() -> None:
    body = WS.to_provider(
        Workspace(name="t", display_name="T", members=[ref("genericUser", kp.USER_ID)]),
        kp.ctx("genericWorkspace"),
    )
    assert body == {"name": "t", "displayName": "T", "members": [kp.USER_ID]}
    with pytest.raises(MappingError, match="teams have no custom attributes"):
        WS.to_provider(Workspace(name="t", custom_fields={"aStr": "b"}), kp.ctx("genericWorkspace"))
