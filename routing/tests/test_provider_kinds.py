"""The admin's provider kinds are the kinds `llm` can serve: a kind added on one side fails here until added on
the other (a Django choice and its migration, or a provider module's `KINDS`)."""

from __future__ import annotations

import llm
from routing.models import Provider


def test_the_provider_kind_choices_are_the_kinds_llm_serves() -> None:
    assert set(Provider.Kind.values) == llm.PROVIDER_KINDS
    assert len(Provider.Kind.values) == len(llm.PROVIDER_KINDS)


def test_a_kind_without_base_url_is_exactly_the_in_process_kind() -> None:
    # `Provider.clean` lets only local providers go without a base URL, as ProviderConfig does for in-process kinds.
    in_process = {kind for kind, provider in llm.providers.PROVIDERS_BY_KIND.items() if provider.in_process}
    assert in_process == {Provider.Kind.LOCAL.value}
