"""Search the Hub for the "From the Hub..." dialog: one list_models call, with the fields the rows show."""

from __future__ import annotations

from fusion_gui.engine.hub.connection import hub_api
from fusion_gui.engine.hub.errors import hub_errors
from fusion_gui.engine.hub.events import HubModelRow

# What list_models' `expand` asks the Hub for (one request, no per-model calls)
EXPAND = ["downloads", "likes", "gated", "tags", "safetensors", "pipeline_tag", "cardData"]
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "BF16": 2, "F16": 2, "I16": 2,
                "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


def _license(info) -> str | None:
    card = getattr(info, "card_data", None)
    value = getattr(card, "license", None) if card is not None else None
    if value:
        return str(value)
    return next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), None)


def _size(info) -> int | None:
    """Bytes of the weights from the parameter count per dtype the Hub keeps (None when it has none)."""
    params = getattr(getattr(info, "safetensors", None), "parameters", None)
    if not params:
        return None
    return sum(int(count) * _DTYPE_BYTES.get(str(dtype).upper(), 2) for dtype, count in params.items())


def row_of(info) -> HubModelRow:
    return HubModelRow(info.id, int(info.downloads or 0), int(info.likes or 0), _license(info),
                       bool(info.gated), _size(info), info.pipeline_tag)


def search_models(query: str, limit: int = 20) -> list[HubModelRow]:
    """The Hub's models matching `query`, most downloaded first; InputError when the Hub cannot be reached."""
    query = (query or "").strip()
    with hub_errors(query or "the Hub search"):
        found = hub_api().list_models(search=query or None, limit=limit, sort="downloads", expand=EXPAND)
        return [row_of(info) for info in found]
