"""Reference for brainmesh's chat templates: transformers' apply_chat_template.

Usage: ref_chat_templates.py REQUEST.json OUT.json

REQUEST.json: {"gguf": path, "templates": {name: jinja source}, "conversations": [[{role, content}]]}
Writes {name: [rendered text or {"error": message}, one per conversation]}, each rendered with
the GGUF's tokenizer (its bos/eos tokens) and add_generation_prompt=True.
"""
import json
import os
import sys

from transformers import AutoTokenizer


def main() -> None:
    req = json.load(open(sys.argv[1]))
    d, name = os.path.split(os.path.abspath(req["gguf"]))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    out = {"bos_token": tok.bos_token, "eos_token": tok.eos_token}
    for tname, source in req["templates"].items():
        rendered = []
        for conv in req["conversations"]:
            try:
                rendered.append(tok.apply_chat_template(conv, chat_template=source, tokenize=False,
                                                        add_generation_prompt=True))
            except Exception as e:  # the template's raise_exception, or a rendering error
                rendered.append({"error": str(e)})
        out[tname] = rendered
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
