#!/usr/bin/env python3
"""Writes the tiny BERT fixture of crates/bert/tests/tiny.rs and its reference outputs.

A 2-layer, 32-wide BertModel (4 heads, feed-forward 64, 16 positions, 40-word vocabulary) with seeded
random weights, saved by transformers (model.safetensors, config.json); tokenizer.json is
all-MiniLM-L6-v2's with the vocabulary cut to 40 words (ids renumbered); reference.json holds
the sentences, the token ids and the sentence embeddings transformers computes (mean pooling over the
mask, L2 normalisation). Run from this folder: MODELOPT_MINILM=/path/to/minilm python3 make_tiny.py
(transformers 5.24, torch 2.15).
"""
import json
import os

import torch
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

src = os.environ.get("MODELOPT_MINILM", "/work/models/minilm")
src = src if os.path.isdir(src) else os.path.dirname(src)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat", "rug",
         "is", "was", "big", "small", "red", "blue", "and", "of", "to", "in", "it", "runs", "fast", ".", ",",
         "!", "?", "##s", "##ed", "##ing", "python", "code", "list", "value", "new", "old", "very"]
tok = json.load(open(os.path.join(src, "tokenizer.json")))
vocab = {w: i for i, w in enumerate(words)}
tok["model"]["vocab"] = vocab
for t in tok["added_tokens"]:
    t["id"] = vocab[t["content"]]
for name, sp in tok["post_processor"]["special_tokens"].items():
    sp["ids"] = [vocab[x] for x in sp["tokens"]]
tok["truncation"] = None
tok["padding"] = None
json.dump(tok, open("tokenizer.json", "w"), ensure_ascii=False)

torch.manual_seed(7)
cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=16, type_vocab_size=2, hidden_act="gelu",
                 layer_norm_eps=1e-12)
model = BertModel(cfg, add_pooling_layer=False).eval()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.randn_like(p) * 0.5)
model.save_pretrained(".", safe_serialization=True)

sentences = ["The cat sat on the mat.", "A big red dog runs very fast!", "python code",
             "The old value of the new list is in it, and it was small.", "rug",
             "the cat and the dog and the mat and the rug and the code and the list",  # > 16 tokens
             "Blue?"]
fast = PreTrainedTokenizerFast(tokenizer_file="tokenizer.json", pad_token="[PAD]", unk_token="[UNK]")
enc = fast(sentences, padding=True, truncation=True, max_length=16, return_tensors="pt")
with torch.no_grad():
    h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
m = enc["attention_mask"].unsqueeze(-1).float()
e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), p=2, dim=1)
ids = [[int(i) for i, k in zip(row, mk) if k] for row, mk in zip(enc["input_ids"], enc["attention_mask"])]
json.dump({"sentences": sentences, "ids": ids, "embeddings": e.tolist(),
           "generator": "make_tiny.py: transformers BertModel, torch " + torch.__version__},
          open("reference.json", "w"), indent=1)
