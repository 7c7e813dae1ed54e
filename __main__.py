"""Pulumi entry point: `pulumi up --stack dev` (kind) or `--stack eks` (AWS)."""

import pulumi

from mlplatform.config import ConfigError
from stack import build

try:
    build(pulumi.get_stack())
except ConfigError as err:
    # A clean message naming each bad key, not a Python traceback.
    raise pulumi.RunError(str(err)) from None
