"""mailer's search attributes on the namespace: registered when missing, by the worker at
its start and by a starter that finds one missing (a stack started by an older release).

A cluster that refuses the OperatorService (Temporal Cloud with an API key, a cluster with
authorization) is not fatal when it cannot list: the attributes are assumed made by its
administrator (docs/deploy.md). When it lists some missing and refuses to add them, the
caller gets one line naming them and the commands that add them.
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from mailer.core.errors import ConfigError
from workflows.search_attributes import ALL_KEYS

log = logging.getLogger("mailer.worker")

_INDEXED_TYPES = {
    "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


_REFUSED = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED)


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register mailer's search attributes that the namespace lacks; returns those added."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        present = set(listed.custom_attributes)
    except RPCError as error:
        if error.status in _REFUSED:
            log.warning(
                "cannot list search attributes (%s): assuming %s exist",
                error.status.name,
                ", ".join(key.name for key in ALL_KEYS),
            )
            return []
        # The time-skipping test server cannot list, but accepts additions.
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        present = set()
    missing = {
        key.name: _INDEXED_TYPES[key.indexed_value_type.name]
        for key in ALL_KEYS
        if key.name not in present
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as error:
            if error.status not in _REFUSED:
                raise
            raise ConfigError(
                f"namespace {namespace} lacks search attributes {', '.join(sorted(missing))} "
                f"and refuses to add them ({error.status.name}); add them once: "
                + "; ".join(
                    _create_command(namespace, name, kind) for name, kind in missing.items()
                )
            ) from None
    return sorted(missing)


def _create_command(namespace: str, name: str, kind: IndexedValueType.ValueType) -> str:
    type_name = IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()
    return (
        f"temporal operator search-attribute create --namespace {namespace} "
        f"--name {name} --type {type_name}"
    )


def missing_attribute(error: RPCError) -> bool:
    """Whether a start was refused for a search attribute the namespace does not know."""
    return error.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in error.message
