"""An exported model as its user sees it: loaded by transformers (and peft) alone, in a process
that never imports lambda_dpo."""

import json
import os
import subprocess
import sys
import textwrap

PROMPT = "Tell me about salt in cooking."
NEW_TOKENS = 24

# Greedy answer of an exported directory, by transformers (and peft) alone: what a user of the export runs.
PLAIN_GENERATE = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out, prompt, new_tokens, adapter = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "adapter"
    tokenizer = AutoTokenizer.from_pretrained(out)
    if adapter:
        from peft import PeftModel
        base = sys.argv[5] if len(sys.argv) > 5 else json.load(open(out + "/adapter_config.json"))["base_model_name_or_path"]
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    else:
        model = AutoModelForCausalLM.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.eval().generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    print(json.dumps({"answer": answer, "lambda_dpo_imported": any(name.startswith("lambda_dpo") for name in sys.modules)}))
""")


def plain_answer(out, form: str = "merged", base=None) -> str:
    """``base``: the adapter's base directory, where its adapter_config names a registered model."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    found = subprocess.run([sys.executable, "-c", PLAIN_GENERATE, str(out), PROMPT, str(NEW_TOKENS), form, *([str(base)] if base else [])],
                           capture_output=True, text=True, check=True, env=env, cwd="/")
    result = json.loads(found.stdout.strip().splitlines()[-1])
    assert not result["lambda_dpo_imported"]
    return result["answer"]
