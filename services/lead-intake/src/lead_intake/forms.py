"""The forms registry: which marketing forms may post, from where, and where they go next."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from funnel_common.types import Label
from lead_intake.configfile import load_yaml_model
from lead_intake.edge import is_loopback_url

DEFAULT_FORM = "default"


class Form(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # Public: it names the form in the page's HTML, it does not authenticate anyone.
    key: Label | None = None
    form_type: Label = "contact"
    default_source: Label = "website"
    default_campaign: Label | None = None
    required_fields: list[Label] = Field(default_factory=lambda: ["email"])
    origins: list[HttpUrl] = Field(default_factory=list)
    thank_you_urls: list[HttpUrl] = Field(default_factory=list)

    @property
    def origin_set(self) -> frozenset[str]:
        return frozenset(str(origin).rstrip("/") for origin in self.origins)

    def allows_origin(self, origin: str | None, *, any_loopback: bool = False) -> bool:
        """A browser post (with an Origin) must come from one of the form's origins (or,
        in development, from any page on this machine: ``any_loopback``)."""
        if origin is None or origin.rstrip("/") in self.origin_set:
            return True
        return any_loopback and is_loopback_url(origin)

    def thank_you_url(self, requested: str | None, *, any_loopback: bool = False) -> str | None:
        """Where to redirect: the requested URL if listed (or, in development, on this
        machine), else the first; None if refused."""
        allowed = [str(url) for url in self.thank_you_urls]
        if requested is None:
            return allowed[0] if allowed else None
        # Compared as normalised URLs, exactly: no prefix matching, no open redirect.
        try:
            wanted = str(HttpUrl(requested))
        except ValueError:
            return None
        return wanted if wanted in allowed or (any_loopback and is_loopback_url(wanted)) else None


class FormRegistry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    forms: dict[Label, Form]

    @model_validator(mode="after")
    def _default_form_exists(self) -> FormRegistry:
        if DEFAULT_FORM not in self.forms:
            raise ValueError(f"a {DEFAULT_FORM!r} form is required (posts without a form id)")
        return self

    def get(self, form_id: str) -> Form | None:
        form = self.forms.get(form_id)
        return form if form is not None and form.enabled else None

    @property
    def all_origins(self) -> frozenset[str]:
        return frozenset().union(*(form.origin_set for form in self.forms.values() if form.enabled))


def load_forms(path: Path) -> FormRegistry:
    return load_yaml_model(path, FormRegistry)
