"""Chat templates: messages -> prompt text (and ids) with jinja2, in transformers' sandboxed environment."""
from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import lru_cache

CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@lru_cache(maxsize=16)
def compile_template(template: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # jinja's own tojson escapes HTML characters; transformers' does not
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class GenerationTag(jinja2.ext.Extension):
        """Accept `{% generation %}...{% endgeneration %}` blocks (assistant-mask markers) and render their body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


def pick_template(tokenizer, chat_template: str | None, tools) -> str:
    templates = tokenizer.chat_template
    if isinstance(templates, list):  # tokenizer_config.json may store [{"name": ..., "template": ...}]
        templates = {t["name"]: t["template"] for t in templates}
    if isinstance(templates, dict):
        if chat_template in templates:
            return templates[chat_template]
        if chat_template is None:
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise ValueError(f"this tokenizer has several chat templates and none is the default; pass "
                             f"chat_template= one of {sorted(templates)}")
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set and no "
                         "template argument was passed (it comes from tokenizer_config.json's chat_template or a "
                         "chat_template.jinja file).")
    return templates


def render(template: str, conversation: list[dict], *, continue_final_message: bool, **variables) -> str:
    compiled = compile_template(template)
    if continue_final_message:
        conversation = copy.deepcopy(conversation)
        final = conversation[-1]["content"]
        if isinstance(final, (list, tuple)):
            block = next((b for b in reversed(final) if "text" in b), None)
            if block is None:
                raise ValueError("continue_final_message is set but the final message has no text to continue")
            final = block["text"]
            block["text"] += CONTINUE_TAG
        else:
            conversation[-1]["content"] = final + CONTINUE_TAG
    text = compiled.render(messages=conversation, **variables)
    if continue_final_message:
        if final.strip() not in text or CONTINUE_TAG.strip() not in text:
            raise ValueError("continue_final_message is set but the chat template dropped part of the final message")
        end = text.rindex(CONTINUE_TAG.strip())
        text = text[:end] if text[end:end + len(CONTINUE_TAG)] == CONTINUE_TAG else text[:end].rstrip()
    return text


def apply_chat_template(tokenizer, conversation, *, tools=None, documents=None, chat_template=None,
                        add_generation_prompt=False, continue_final_message=False, tokenize=True, padding=False,
                        truncation=False, max_length=None, return_tensors=None, return_dict=False,
                        tokenizer_kwargs=None, **template_kwargs):
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ValueError("conversation must be a non-empty list of {'role': ..., 'content': ...} messages "
                         "(or a list of such lists)")
    if continue_final_message and add_generation_prompt:
        raise ValueError("continue_final_message and add_generation_prompt are not compatible")
    if tools is not None and not all(isinstance(tool, dict) for tool in tools):
        raise ValueError("tools must be JSON schemas (dicts)")
    if documents is not None and not all(isinstance(doc, dict) for doc in documents):
        raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    template = pick_template(tokenizer, chat_template, tools)
    batched = isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
    conversations = conversation if batched else [conversation]
    variables = {**tokenizer.special_tokens_map, **template_kwargs}
    rendered = [render(template, getattr(chat, "messages", chat), continue_final_message=continue_final_message,
                       tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **variables)
                for chat in conversations]
    rendered = rendered if batched else rendered[0]
    if not tokenize:
        return rendered
    out = tokenizer(rendered, padding=padding, truncation=truncation, max_length=max_length,
                    add_special_tokens=False, return_tensors=return_tensors, **(tokenizer_kwargs or {}))
    return out if return_dict else out["input_ids"]
