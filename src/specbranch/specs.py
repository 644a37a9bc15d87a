"""The `NAME[:KEY=VALUE,...]` grammar, shared by draft-policy specs (`svip:threshold=0.5`) and
benchmark method variants (`specbranch:k_max=1,epsilon=0.3`).

`split_spec` only splits; what the keys mean and how values are typed is up to the caller.
"""

from __future__ import annotations

from specbranch.errors import SpecBranchError


def split_spec(text: str, what: str) -> tuple[str, list[tuple[str, str]]]:
    """`NAME[:k=v,...]` -> (NAME, [(k, v), ...]) with keys and values stripped.

    what: how errors name the thing ("draft policy", "method"). An item without `=` is an error.
    """
    name, _, rest = text.partition(":")
    items = []
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecBranchError(f"{what} {name!r}: option {item!r} in {text!r} must look like name=value")
        items.append((key.strip(), value.strip()))
    return name.strip(), items
