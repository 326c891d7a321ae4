"""Entry point of the Pulumi program (`pulumi up` in the project root, stack = environment).

The stack's settings are read from stacks/Pulumi.<stack>.yaml through fabric's StackSettings, the
same validation `fabric` runs, before any resource is declared."""

import sys
from pathlib import Path

import pulumi

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pulumi up` runs this file with infra/ as the working program
    sys.path.insert(0, str(ROOT))

from fabric.spec import load_stack  # noqa: E402
from infra.program import build  # noqa: E402

outputs = build(load_stack(pulumi.get_stack(), ROOT))
for key, value in outputs.items():
    pulumi.export(key, value)
