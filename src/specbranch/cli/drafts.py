"""`--show-drafts`: the streamed text coloured by where each token came from.

Origins (`metrics.ORIGINS`): a draft token the target accepted on the draft's likeliest line,
one from another branch (SpecBranch), a prompt-lookup candidate, or a token the target emitted
itself (a correction or bonus token; every token of AR). Colours are ANSI escape codes, used
only when the output is a terminal; elsewhere the text is printed plain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from specbranch.metrics import BRANCH, DRAFT, LOOKUP, TARGET

RESET = "\033[0m"
STYLES = {  # origin -> (ANSI style, what the legend says)
    DRAFT: ("\033[32m", "draft token accepted"),
    BRANCH: ("\033[35m", "from a branch other than the likeliest root"),
    LOOKUP: ("\033[36m", "prompt lookup (copied from the context)"),
    TARGET: ("\033[1;33m", "emitted by the target (correction or bonus)"),
}


class OriginText:
    """Turns committed tokens into text pieces, each wrapped in its origin's colour.

    A token's piece is what decoding the whole output gains by it; a piece that ends inside a
    multi-byte character (decoded as U+FFFD) waits for the tokens that complete it and takes
    the colour of the token that completes it.
    """

    def __init__(self, tokenizer: Any, colour: bool) -> None:
        self.tokenizer, self.colour = tokenizer, colour
        self.ids: list[int] = []
        self.shown = ""  # the decoded text printed so far

    def feed(self, token_ids: Sequence[int], origins: Sequence[str]) -> str:
        """The next tokens' text, coloured by origin when colour is on."""
        out = []
        for token, origin in zip(token_ids, origins, strict=True):
            self.ids.append(token)
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd") or not text.startswith(self.shown):
                continue
            piece, self.shown = text[len(self.shown) :], text
            out.append(f"{STYLES[origin][0]}{piece}{RESET}" if self.colour and piece else piece)
        return "".join(out)


def legend(colour: bool) -> str:
    """One line naming each origin, in its colour (plain names without colour)."""
    if not colour:
        return "origins: " + ", ".join(f"{o} = {text}" for o, (_, text) in STYLES.items())
    return "legend: " + "  ".join(f"{style}{o}{RESET} {text}" for o, (style, text) in STYLES.items())


def rounds_line(lengths: Sequence[int]) -> str:
    """The tokens each round committed, in order."""
    return f"tokens per round ({len(lengths)} rounds): " + " ".join(map(str, lengths))
