"""Rendering conversations with the tokenizer's own chat template and marking trained tokens.

Works for any Hugging Face chat template, with or without {% generation %} markers: the text of
assistant turn i starts where the rendering of the turns before it, with the generation prompt,
ends; it is trained up to and including the template's end-of-turn text (`<|im_end|>` in ChatML,
`</s>` in Llama-2-chat), but not the whitespace after it, the role headers or any other turn.
"""
from agentune.records import DataError


def render(tokenizer, messages, add_generation_prompt=False):
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_header_end(tokenizer, text, at):
    """Where the assistant header before position `at` ends (what the template's generation
    prompt adds, found from a one-turn rendering); `at` when there is none to find."""
    probe = [{"role": "user", "content": "x"}]
    header = render(tokenizer, probe, add_generation_prompt=True)[len(render(tokenizer, probe)):].lstrip()
    found = text.rfind(header, 0, at) if header else -1
    return found + len(header) if found >= 0 else at


def trained_spans(tokenizer, messages, where="<conversation>"):
    """The full rendered text and the (start, end) character spans of the trained assistant turns."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if not m.get("loss"):
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        if not full.startswith(prefix) or not full.startswith(upto):
            raise DataError(where, f"the chat template renders turn {i} differently depending on later "
                            "turns, so its trained tokens cannot be located",
                            "use a template whose rendering of a prefix is a prefix of the whole")
        content = m["content"].strip()
        # the turn's text is the last thing the rendering up to it holds (before the closing);
        # searching from the end matters for a first turn, whose prefix is the template's header
        # and default system prompt (not rendered separately: no turns before it)
        at = upto.rfind(content, len(prefix)) if content else len(prefix)
        if at < 0:
            raise DataError(where, f"the chat template does not render the text of assistant turn {i} verbatim",
                            "use a chat template that keeps the assistant content as given")
        content_end = at + len(content)
        # the end-of-turn text the template closes the turn with, without trailing whitespace
        closing = upto[content_end:].rstrip()
        # trained: the content (with the whitespace the template puts before it, which tokenizers
        # fold into its first token) and its closing; never the role header, nor for a first turn
        # the template's default system prompt
        floor = len(prefix) if i else assistant_header_end(tokenizer, upto, at)
        start = at
        while start > floor and upto[start - 1].isspace():
            start -= 1
        spans.append((start, content_end + len(closing)))
    return full, spans


def encode(tokenizer, messages, where="<conversation>"):
    """Token ids of the rendered conversation and a parallel list of booleans, True on the
    tokens the loss is computed on (assistant turns with loss=True, plus their end-of-turn)."""
    if not tokenizer.is_fast:
        raise DataError(where, "the tokenizer is not a fast tokenizer (no character offsets)",
                        "load the model with a tokenizer.json (a fast tokenizer)")
    full, spans = trained_spans(tokenizer, messages, where)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask, s = [], 0
    for start, end in offsets:
        while s < len(spans) and start >= spans[s][1]:
            s += 1
        # a token belongs to the trained span it starts in (a token straddling the header and the
        # content therefore stays with the header)
        mask.append(s < len(spans) and spans[s][0] <= start < spans[s][1] and end > start)
    if not any(mask):
        raise DataError(where, "no token of the conversation is trained",
                        "the record needs an assistant turn with text")
    return ids, mask
