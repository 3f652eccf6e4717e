"""The table of unified model ids and their classes."""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from functools import cache
from types import MappingProxyType
from typing import Any

from pydantic import create_model

from unified_models._base import UnifiedResource
from unified_models.crm import Engagement, Opportunity, Pipeline, Stage
from unified_models.custom import CUSTOM_PREFIX, CustomObject
from unified_models.generic import Company, Contact, User, Workspace

__all__ = ["MODELS", "model_class", "partial"]

MODELS: Mapping[str, type[UnifiedResource]] = MappingProxyType(
    {cls.MODEL: cls for cls in (Contact, Company, User, Workspace, Opportunity, Pipeline, Stage, Engagement)}
)
"""The eight unified models by id (``genericContact`` -> :class:`Contact`, ...)."""


def model_class(model: str) -> type[UnifiedResource]:
    """Return the class of a unified model id; ``custom:<type>`` ids give :class:`CustomObject`.

    Raises:
        KeyError: for an unknown model id (the message lists the known ones).
    """
    if model.startswith(CUSTOM_PREFIX) and len(model) > len(CUSTOM_PREFIX):
        return CustomObject
    try:
        return MODELS[model]
    except KeyError:
        known = ", ".join(MODELS)
        raise KeyError(f"unknown unified model {model!r}; known: {known}, custom:<type>") from None


@cache
def partial(cls: type[UnifiedResource]) -> type[UnifiedResource]:
    """Return a variant of ``cls`` in which every field is optional, for PATCH-style updates.

    Validators of the original model still run on the fields that are given; ``model_fields_set`` tells
    which fields the caller sent.
    """
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        optional = copy(info)
        optional.default = None
        optional.default_factory = None
        fields[name] = (info.annotation | None, optional)  # type: ignore[operator]
    return create_model(
        f"Partial{cls.__name__}",
        __base__=cls,
        __module__=cls.__module__,
        **fields,
    )
