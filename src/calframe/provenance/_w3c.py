"""A provenance record as a W3C PROV document."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from prov.model import ProvDocument

from ._cells import _printable
from ._json import _to_json
from ._versions import software_versions

if TYPE_CHECKING:  # pragma: no cover
    from ._provenance import Provenance


def _prov_name(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.fspath(text)))


def prov_document(prov: Provenance, *, output: str | None = None,
                  output_sha256: str | None = None) -> ProvDocument:
    """``prov`` as a W3C PROV document (see :meth:`Provenance.to_prov_document`)."""
    doc = ProvDocument()
    doc.add_namespace("calframe", "urn:calframe:")
    doc.add_namespace("sha256", "urn:sha256:")
    agent = doc.agent("calframe:software",
                      {"prov:type": "prov:SoftwareAgent",
                       "calframe:version": software_versions().get("calframe", "")})
    entities = {}
    by_origin: dict[str, list] = {}
    for r in prov.inputs:
        key = f"sha256:{r.sha256 or 'unknown'}"
        if key in entities:
            by_origin.setdefault(r.origin, []).append(entities[key])
            continue
        attrs = {"prov:label": _printable(r.path), "calframe:role": r.role,
                 "calframe:frametype": r.frametype,
                 "calframe:date_obs": r.date_obs,
                 "calframe:shape": _to_json(list(r.shape))}
        if r.exptime is not None:
            attrs["calframe:exptime"] = float(r.exptime)
        entities[key] = doc.entity(key, attrs)
        by_origin.setdefault(r.origin, []).append(entities[key])
    activities = []
    for i, s in enumerate(prov.steps, start=1):
        act = doc.activity(f"calframe:step{i}-{s.step}", s.time or None, None,
                           {"prov:label": s.step,
                            "calframe:parameters": s.parameters_json(),
                            "calframe:versions": _to_json(s.versions)})
        doc.wasAssociatedWith(act, agent)
        activities.append(act)
    for act, step in zip(activities, prov.steps, strict=True):
        # A step used the inputs recorded with it (same origin file).
        for ent in by_origin.get(step.origin, []):
            doc.used(act, ent)
    if output is not None:
        key = (f"sha256:{output_sha256}" if output_sha256
               else f"calframe:output-{_prov_name(output)}")
        out = doc.entity(key, {"prov:label": _printable(
            os.path.basename(os.fsdecode(output)))})
        if activities:
            doc.wasGeneratedBy(out, activities[-1])
        for ent in entities.values():
            doc.wasDerivedFrom(out, ent)
    return doc
