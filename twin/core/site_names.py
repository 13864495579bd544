"""Finding a ground site (gateway or city) by the name a person types.

A gateway or city matches its name exactly, else ignoring case, accents and punctuation, else as
a run of whole words of the name (``New York`` is ``New-York-Newark``, ``Mexico City`` is
``Ciudad-de-México-(Mexico-City)``); a name that matches several sites is rejected with the
candidates. Used by route requests and by compute jobs' sources and destinations.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from twin.schema.commands import CommandError, Reason

MAX_CANDIDATES_SHOWN = 5


def _words(name: str) -> tuple[str, ...]:
    """Lower-case ASCII words of a name: ``São-Paulo`` -> ``("sao", "paulo")``."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return tuple(re.sub(r"[^0-9a-z]+", " ", plain.casefold()).split())


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    k = len(run)
    return any(words[i:i + k] == run for i in range(len(words) - k + 1))


class SiteNames:
    """Name lookup over one list of ground sites (gateways or cities)."""

    def __init__(self, names: Sequence[str], what: str) -> None:
        self.names = tuple(names)
        self.what = what
        self.exact = {n: i for i, n in enumerate(self.names)}
        self.words = [_words(n) for n in self.names]

    def find(self, query: str, field: str) -> int:
        """Index of the site ``query`` names; CommandError(bad_argument) when none or several match."""
        if query in self.exact:
            return self.exact[query]
        q = _words(query)
        if q:
            for match in ((lambda w: w == q), (lambda w: _contains_run(w, q))):
                hits = [i for i, w in enumerate(self.words) if match(w)]
                if len(hits) == 1:
                    return hits[0]
                if hits:
                    shown = ", ".join(repr(self.names[i]) for i in hits[:MAX_CANDIDATES_SHOWN])
                    more = f" and {len(hits) - MAX_CANDIDATES_SHOWN} more" if len(hits) > MAX_CANDIDATES_SHOWN else ""
                    raise CommandError(Reason.BAD_ARGUMENT, f"{self.what} {query!r} is ambiguous: {shown}{more}", field)
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown {self.what} {query!r} (none of the twin's {len(self.names)} "
                           f"{self.what} names matches)", field)
