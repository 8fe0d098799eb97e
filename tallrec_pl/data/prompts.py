"""Templates: a window or a JSON record becomes a ``Sample`` (instruction, history, target).

Samples keep their history as a list so that truncation can drop the oldest items and
render the text again. Nothing here knows a tokenizer.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from tallrec_pl.data.windows import Window
from tallrec_pl.errors import TallrecError

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
REC_INSTRUCTION = (
    "Given the user's preference and unpreference, identify whether the user will like the target {domain} "
    'by answering "Yes." or "No.".'
)
# Implicit feedback (plays, clicks, purchases): one history list, no liked / disliked split.
IMPLICIT_INSTRUCTION = (
    "Given the {domain}s the user interacted with, in time order, identify whether the user will interact with "
    'the target {domain} by answering "Yes." or "No.".'
)
IMPLICIT_INPUT = 'User History: {history}\nWhether the user will interact with the target {domain} "{target}"?'
_INPUT_RE = re.compile(
    r"(?:User Profile: (.*?)\n)?User Preference: (.*)\nUser Unpreference: (.*)\nWhether the user will like the target "
    r"(\w+) \"(.*)\"\?",
    re.S,
)
_ITEM_SPLIT = re.compile(r', (?=")')  # items in a list start with a quote: split only there


Rows = tuple[int, ...]  # an item's rows in the item embeddings: one per file that has it, () for none


def as_rows(value: int | Sequence[int]) -> Rows:
    """An item's rows from a single row (-1: none) or a sequence of rows."""
    if isinstance(value, int):
        return (value,) if value >= 0 else ()
    return tuple(int(r) for r in value)


def shown_item(text: str, rows: Rows, item_token: str, token_only: bool, quote: bool = False) -> str:
    """An item as a prompt shows it: its text (quoted with ``quote``) then one ``item_token`` per
    row; with ``token_only`` the tokens alone when it has rows."""
    if not item_token or not rows:
        return f'"{text}"' if quote else text
    tokens = " ".join([item_token] * len(rows))
    if token_only:
        return tokens
    return f'"{text}" {tokens}' if quote else f"{text} {tokens}"


@dataclass
class Sample:
    """One rec-tuning or instruction sample, still as text parts.

    ``history`` is (text, liked) oldest first; ``time_ordered`` is False for samples parsed
    from JSON, where only the order within the liked and within the disliked list is known.
    Instruction samples have ``history`` None and carry their input text whole.

    Collaborative item tokens (``tallrec_pl/model/collab.py``): ``history_rows`` holds each
    history item's rows in the item embeddings and ``target_row`` the target's: one row per
    embeddings file that has the item, ``()`` (or -1) for none, a cold item; a single int is one row.
    Given an ``item_token``, the prompt has one such token per row right after the item's text; with
    ``token_only`` the tokens replace the text of each item that has rows (items without keep
    their text, so cold items still read as titles).
    """

    instruction: str
    output: str
    input: str = ""
    history: list[tuple[str, bool]] | None = None
    target: str = ""
    domain: str = "movie"
    time_ordered: bool = True
    meta: dict = field(default_factory=dict)
    profile: str = ""  # a "User Profile:" line (cold start), empty for none
    input_template: str | None = None  # implicit feedback: {history}, {domain}, {target}; None: TALLRec's two lists
    history_rows: list[Rows] | None = None  # item embedding rows per history entry; None: no item tokens
    target_row: Rows = ()
    token_only: bool = False  # items with rows appear as their item tokens alone, without their text

    def __post_init__(self) -> None:
        self.target_row = as_rows(self.target_row)
        if self.history_rows is not None:
            self.history_rows = [as_rows(r) for r in self.history_rows]

    def _rows(self) -> list[tuple[int, ...]]:
        return self.history_rows if self.history_rows is not None else [()] * len(self.history)

    def _item(self, text: str, rows: tuple[int, ...], item_token: str, quote: bool = False) -> str:
        return shown_item(text, rows, item_token, self.token_only, quote)

    def render_input(self, item_token: str = "") -> str:
        """The input text; with ``item_token``, that token follows each item that has embedding rows."""
        if self.history is None:
            return self.input
        texts = [(self._item(t, r, item_token), ok) for (t, ok), r in zip(self.history, self._rows(), strict=True)]
        if self.input_template is not None:
            history = ", ".join(t for t, _ in texts)
            target = self._item(self.target, self.target_row, item_token)
            if self.token_only and item_token and self.target_row:  # the template quotes the target's text
                body = self.input_template.replace('"{target}"', "{target}")
            else:
                body = self.input_template
            body = body.format(history=history, domain=self.domain, target=target)
            return (f"User Profile: {self.profile}\n" if self.profile else "") + body
        liked = ", ".join(t for t, ok in texts if ok)
        disliked = ", ".join(t for t, ok in texts if not ok)
        target = self._item(self.target, self.target_row, item_token, quote=True)
        return (
            (f"User Profile: {self.profile}\n" if self.profile else "")
            + f"User Preference: {liked}\nUser Unpreference: {disliked}\n"
            f"Whether the user will like the target {self.domain} {target}?"
        )

    def item_rows(self) -> list[int]:
        """The embedding rows of the item tokens ``render_input(item_token)`` places, in text order."""
        if self.history is None:
            return []
        rows = self._rows()
        if self.input_template is None:
            order = [r for r, (_, ok) in zip(rows, self.history, strict=True) if ok]
            order += [r for r, (_, ok) in zip(rows, self.history, strict=True) if not ok]
            order.append(self.target_row)
        else:
            order = []
            for _, name, _, _ in string.Formatter().parse(self.input_template):
                order += rows if name == "history" else [self.target_row] if name == "target" else []
        return [row for item in order for row in item]

    def prompt(self, item_token: str = "") -> str:
        text = self.render_input(item_token)
        if text:
            return ALPACA_WITH_INPUT.format(instruction=self.instruction, input=text)
        return ALPACA_NO_INPUT.format(instruction=self.instruction)

    def drop_oldest(self) -> bool:
        """Remove the oldest history item; False when there is none left to remove."""
        if not self.history:
            return False
        if self.time_ordered:
            k = 0
        else:  # only per-list order is known: shorten the longer list from its start
            n_liked = sum(ok for _, ok in self.history)
            drop_liked = n_liked >= len(self.history) - n_liked
            k = next(i for i, (_, ok) in enumerate(self.history) if ok == drop_liked)
        self.history.pop(k)
        if self.history_rows is not None:  # the rows stay aligned with the history
            self.history_rows.pop(k)
        return True

    def to_json(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.render_input(), "output": self.output}


@dataclass
class ItemText:
    """How an item becomes text: ``template`` over its fields, ``history_format`` in lists."""

    template: str = "{title} ({year})"
    history_format: str = '"{}"'

    def render(self, item: str, fields: dict[str, dict[str, str]], source: str) -> str:
        if item not in fields:
            raise TallrecError(
                f"{source}: item {item} is rated in the log but missing from the item table", "add it to the item table"
            )
        return fill_template(self.template, fields[item], "data.item_template", f"items of {source}")


def fill_template(template: str, fields: dict[str, str], option: str, whose: str) -> str:
    """``template`` over ``fields``; a field they lack is a one-line error naming the ones there are."""
    try:
        return template.format(**fields).strip()
    except KeyError as err:
        raise TallrecError(
            f"{option} {template!r} uses field {err.args[0]!r}, which {whose} lack",
            f"use only {', '.join(sorted(fields))}",
        ) from None


@dataclass
class Wording:
    """The instruction and the input of implicit-feedback samples (explicit ones use TALLRec's)."""

    instruction: str = IMPLICIT_INSTRUCTION
    input_template: str = IMPLICIT_INPUT

    def __post_init__(self) -> None:
        checks = (
            ("data.implicit_instruction", self.instruction, {"domain"}),
            ("data.implicit_input", self.input_template, {"history", "domain", "target"}),
        )
        for option, template, allowed in checks:
            try:
                used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            except ValueError as err:
                raise TallrecError(
                    f"{option} {template!r} is not a template ({err})", "write fields as {name} and braces as {{ }}"
                ) from None
            if used - allowed:
                unknown = sorted(used - allowed)[0]
                raise TallrecError(f"{option} uses field {unknown!r}", f"use only {', '.join(sorted(allowed))}")


def window_sample(
    window: Window,
    item_fields: dict,
    text: ItemText,
    domain: str,
    source: str,
    profile: str = "",
    wording: Wording | None = None,
    item_rows: Mapping[str, int | Rows] | None = None,
    token_only: bool = False,
) -> Sample:
    """A window as a sample: TALLRec's liked / disliked lists, or with ``wording`` the implicit one.
    ``item_rows`` (item id -> embedding rows) gives its items their rows for item tokens; with
    ``token_only`` those tokens stand in for the text of the items that have rows."""
    history = [(text.history_format.format(text.render(i, item_fields, source)), ok) for i, ok in window.history]
    rows = item_rows if item_rows is not None else {}
    return Sample(
        instruction=(wording.instruction if wording else REC_INSTRUCTION).format(domain=domain),
        output="Yes." if window.label else "No.",
        history=history,
        target=text.render(window.target, item_fields, source),
        domain=domain,
        meta={
            "user": window.user,
            "item": window.target,
            "history": [i for i, _ in window.history],
            "hist_len": len(window.history),
        },
        profile=profile,
        input_template=wording.input_template if wording else None,
        history_rows=[rows.get(i, ()) for i, _ in window.history] if item_rows is not None else None,
        target_row=rows.get(window.target, ()),
        token_only=token_only,
    )


@dataclass
class UserProfile:
    """The cold-start line: users with fewer than ``below`` history items get their user-table
    fields in the prompt (``template`` over them; null lists every field as "name: value")."""

    below: int = 0
    template: str | None = None

    def render(self, user: str, history_len: int, user_fields: dict[str, dict[str, str]], source: str) -> str:
        fields = user_fields.get(user)
        if history_len >= self.below or not fields:
            return ""
        if self.template is None:
            return ", ".join(f"{k}: {v}" for k, v in fields.items() if v)
        return fill_template(self.template, fields, "data.profile_template", f"users of {source}")


def json_sample(record: dict[str, str]) -> Sample:
    """A TALLRec JSON record; rec inputs are parsed back into lists so they can be truncated."""
    m = _INPUT_RE.fullmatch(record["input"])
    if not m:
        return Sample(instruction=record["instruction"], output=record["output"], input=record["input"])
    profile, liked, disliked, domain, target = m.groups()
    history = [(t, True) for t in _ITEM_SPLIT.split(liked) if t] + [
        (t, False) for t in _ITEM_SPLIT.split(disliked) if t
    ]
    sample = Sample(
        record["instruction"],
        record["output"],
        history=history,
        target=target,
        domain=domain,
        time_ordered=False,
        profile=profile or "",
    )
    if sample.render_input() != record["input"]:  # an unusual list that does not round-trip: keep it whole
        return Sample(instruction=record["instruction"], output=record["output"], input=record["input"])
    return sample


@dataclass(frozen=True)
class PromptSetup:
    """What a server needs of a data module to write its prompts for a request
    (``RecDataModule.prompt_builder``): the tokenizer, the item table (id -> fields; empty for
    TALLRec JSON) and templates, the item tokens of ``model.item_embeddings`` (``item_rows``,
    ``item_token``), and the retriever with its top N when ``data.retriever`` is set."""

    tokenizer: object
    max_length: int
    item_fields: Mapping[str, Mapping[str, str]]
    item_text: ItemText
    domain: str
    profile: UserProfile
    source: str
    retriever: object | None = None
    top_n: int = 20
    item_rows: Mapping[str, Rows] | None = None
    item_token: str = ""
    token_only: bool = False

    def as_kwargs(self) -> dict:
        """The fields by name, not copied (``dataclasses.asdict`` would copy the tokenizer)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
