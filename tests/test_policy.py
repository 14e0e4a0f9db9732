"""A permission policy as data (``pycrm.domain.permissions.Policy``), without a CRM.

The widest scope among the actor's grants wins; a ``none`` grant gives nothing;
a policy file is read as JSON and refused with a ConfigurationError that says
what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pycrm.domain.permissions import DEFAULT_POLICY, Grant, Policy, Scope, _g
from pycrm.errors import ConfigurationError

POLICY = Policy.from_dict(
    {
        "grants": [
            {"roles": ["sales"], "resources": ["deal"], "actions": ["read"], "scope": "own"},
            {"roles": ["sales_manager"], "resources": ["deal"], "actions": ["read"],
             "scope": "team"},
            {"roles": ["*"], "resources": ["deal"], "actions": ["update"], "scope": "none"},
            {"roles": ["legal"], "resources": ["*"], "actions": ["*"], "scope": "department"},
        ]
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "resource", "action", "scope"),
    [
        ({"sales"}, "deal", "read", Scope.OWN),
        ({"sales", "sales_manager"}, "deal", "read", Scope.TEAM),  # the widest wins
        ({"sales"}, "deal", "update", Scope.NONE),  # a none grant gives nothing
        ({"marketing"}, "deal", "read", Scope.NONE),  # no grant at all
        ({"legal"}, "ticket", "approve", Scope.DEPARTMENT),  # "*" resources and actions
        ({"sales"}, "contract", "read", Scope.NONE),
    ],
)
def test_scope_is_the_widest_the_roles_are_granted(
    roles: set[str], resource: str, action: str, scope: Scope
) -> None:
    assert POLICY.scope(roles, resource, action) is scope
    assert POLICY.scope(roles, resource, action) == scope  # asked twice: the same answer


def test_a_none_grant_is_not_among_the_grants_for_an_action() -> None:
    assert POLICY.grants_for({"sales"}, "deal", "update") == ()
    assert [g.scope for g in POLICY.grants_for({"sales"}, "deal", "read")] == [Scope.OWN]


def test_a_policy_file_is_read_as_json(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY.to_dict()), encoding="utf-8")
    assert Policy.load(path) == POLICY
    assert Policy.load(str(path)) == POLICY
    path.write_text(json.dumps(DEFAULT_POLICY.to_dict()), encoding="utf-8")
    assert Policy.load(path) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read policy"),
        ("{not json", "cannot read policy"),
        (b"\xff\xfe{}", "cannot read policy"),
        ('{"grants": [], "roles": []}', "unknown keys"),
        ('{"grants": [{"roles": "sales", "scope": "most"}]}', "scope must be one of"),
    ],
    ids=["missing", "not-json", "not-utf8", "unknown-key", "bad-scope"],
)
def test_a_bad_policy_file_is_refused_with_a_configuration_error(
    tmp_path: Path, content: str | bytes | None, says: str
) -> None:
    path = tmp_path / "policy.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        Policy.load(path)
    assert says in str(raised.value)
    if content is None or says == "cannot read policy":
        assert str(path) in str(raised.value)


def test_to_dict_gives_back_the_data_the_policy_was_read_from() -> None:
    data = {
        "grants": [
            {"roles": ["sales"], "resources": ["deal"], "actions": ["read"], "scope": "own"},
            {"roles": ["service"], "resources": ["deal"], "actions": ["update"], "scope": "all",
             "unless": {"status": "won"}},
            {"roles": ["finance"], "resources": ["receivable"], "actions": ["*"],
             "scope": "department", "when": {"currency": "EUR"}},
        ],
        "fields": [
            {"resource": "receivable", "field": "payments", "hidden": True, "read_only": False,
             "allowed": ["finance"]},
        ],
    }  # fmt: skip
    assert Policy.from_dict(data).to_dict() == data
    assert Policy.from_dict(DEFAULT_POLICY.to_dict()) == DEFAULT_POLICY


def test_extend_adds_another_policys_grants_and_field_rules() -> None:
    extra = Policy.from_dict(
        {
            "grants": [{"roles": ["sales"], "resources": ["contract"], "actions": ["read"],
                        "scope": "all"}],
            "fields": [{"resource": "deal", "field": "amount", "read_only": True}],
        }
    )  # fmt: skip
    for other in (extra, extra.to_dict()):
        extended = POLICY.extend(other)
        assert extended.grants == POLICY.grants + extra.grants
        assert extended.fields == POLICY.fields + extra.fields
        assert extended.scope({"sales"}, "contract", "read") is Scope.ALL


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (["grants"], "policy must be a mapping"),
        ({"grants": ["sales may read deals"]}, "policy grant 0 must be a mapping"),
        ({"grants": [{"roles": "sales", "scope": "own", "resource": "deal"}]},
         "policy grant 0: unknown keys ['resource']"),
        ({"grants": [{"roles": "sales", "actions": "read"}]}, "policy grant 0: scope must be"),
        ({"grants": [{"roles": "sales", "actions": ["read", "sell"], "scope": "own"}]},
         "policy grant 0: unknown actions ['sell']"),
        ({"grants": [{"roles": ["sales", 7], "scope": "own"}]}, "grant 0 roles must be"),
        ({"grants": [{"resources": [None], "scope": "own"}]}, "grant 0 resources must be"),
        ({"grants": [{"actions": {"read": True}, "scope": "own"}]}, "grant 0 actions must be"),
        ({"fields": [{"resource": "deal"}]}, "policy field rule 0 needs 'resource' and 'field'"),
        ({"fields": ["deal.amount"]}, "policy field rule 0 needs 'resource' and 'field'"),
        ({"fields": [{"resource": "deal", "field": "amount", "allowed": [1]}]},
         "field rule 0 allowed must be"),
        ({"grants": [{"resources": ["deal", "custmer"], "scope": "own"}]},
         "policy grant 0: no record kind is called 'custmer'; did you mean 'customer'?"),
        ({"fields": [{"resource": "deals", "field": "amount", "hidden": True}]},
         "policy field rule 0: no record kind is called 'deals'; did you mean 'deal'?"),
        ({"fields": [{"resource": "contact", "field": "notes", "hidden": True}]},
         "policy field rule 0: contact has no field 'notes'"),
        ({"fields": [{"resource": "deal", "field": "ammount", "hidden": True}]},
         "deal has no field 'ammount'; did you mean 'amount'?"),
    ],
    ids=["not-a-mapping", "grant-not-a-mapping", "unknown-grant-key", "no-scope",
         "unknown-action", "role-not-text", "resource-not-text", "actions-a-mapping",
         "rule-without-field", "rule-not-a-mapping", "allowed-not-text", "unknown-resource",
         "rule-on-unknown-resource", "rule-on-unknown-field", "rule-on-misspelt-field"],
)  # fmt: skip
def test_bad_policy_data_is_refused_saying_where(data: object, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_dict(data)  # type: ignore[arg-type]
    assert says in str(raised.value)


def test_the_shortest_grant_and_field_rule_are_read() -> None:
    policy = Policy.from_dict(
        {"grants": [{"scope": "all"}], "fields": [{"resource": "deal", "field": "amount"}]}
    )
    grant, rule = policy.grants[0], policy.fields[0]
    assert (grant.roles, grant.resources, grant.actions, grant.scope) == ((), (), (), Scope.ALL)
    assert (rule.hidden, rule.read_only, rule.allowed) == (False, False, ())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grants": [{"resources": ["zzz"], "scope": "own"}]},
         "policy grant 0: no record kind is called 'zzz'"),
        ({"fields": [{"resource": "contact", "field": "zzz", "hidden": True}]},
         "policy field rule 0: contact has no field 'zzz'"),
    ],
    ids=["unknown-resource", "unknown-field"],
)  # fmt: skip
def test_a_name_close_to_no_known_one_is_refused_without_a_suggestion(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_dict(data)
    assert str(raised.value) == message


def test_the_default_policys_grant_shorthand_splits_its_names_and_keeps_its_conditions() -> None:
    # DEFAULT_POLICY is written with ``_g``, which runs once, when the module is imported
    data = _g("sales service", "deal pipeline", "read update", "own", unless={"status": "won"})
    assert data == {
        "roles": ["sales", "service"],
        "resources": ["deal", "pipeline"],
        "actions": ["read", "update"],
        "scope": "own",
        "unless": {"status": "won"},
    }
    grant = Grant(
        ("sales", "service"), ("deal", "pipeline"), ("read", "update"), Scope.OWN,
        unless={"status": "won"},
    )  # fmt: skip
    assert Policy.from_dict({"grants": [data]}).grants == (grant,)
