"""The CrossGuard pack: `pulumi preview --policy-pack policies` (real users, with the Pulumi CLI).

It only builds the pack. Each rule of fabric.policy.rules becomes one stack validation policy with
the stack's enforcement, so the pack and `fabric policy check` can never disagree. Importing this
module starts the policy server: tests call the rules directly and never import it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402
from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationArgs, StackValidationPolicy  # noqa: E402

from fabric.policy.check import pinned_evidence  # noqa: E402
from fabric.policy.rules import RULES, PolicyInput, Resource  # noqa: E402
from fabric.spec import load_stack  # noqa: E402

STACK = pulumi.get_stack()
SETTINGS = load_stack(STACK)
LEVEL = EnforcementLevel.MANDATORY if SETTINGS.policy.enforcement == "mandatory" else EnforcementLevel.ADVISORY


def _validator(rule):  # noqa: ANN001, ANN202
    def validate(args: StackValidationArgs, report_violation) -> None:  # noqa: ANN001
        resources = [Resource(r.resource_type, r.name, r.name, dict(r.props)) for r in args.resources]
        found = pinned_evidence(STACK, SETTINGS)
        data = PolicyInput(STACK, SETTINGS, resources, found.pinned, [], found.sources, found.problems)
        for violation in rule.check(data):
            report_violation(f"{violation.subject}: {violation.message}")

    return validate


PolicyPack(
    name="fabric-policies",
    enforcement_level=LEVEL,
    policies=[
        StackValidationPolicy(name=rule.id.lower(), description=rule.title, validate=_validator(rule)) for rule in RULES
    ],
)
