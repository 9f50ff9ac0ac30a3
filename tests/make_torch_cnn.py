#!/usr/bin/env python3
"""Writes tests/data/torch_cnn.safetensors (a torch-trained-like CNN's state_dict, as
`safetensors.torch.save_file(model.state_dict())` stores it: nested names `features.1.running_mean`,
`num_batches_tracked` as I64) and tests/data/torch_cnn_io.safetensors (an input batch and the model's
eval-mode logits) for tests/cnn_file.rs. Run from the repository root with torch 2.15:
    python3 tests/make_torch_cnn.py
With --check PATH it loads a state_dict written by modelopt into the same architecture (strict) and
prints the logits' largest difference from the stored ones (the other direction of the test).
"""
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file


def model():
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, groups=2), nn.ReLU()),
        classifier=nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 2 * 2, 3)),
    ))


def main():
    torch.manual_seed(3)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        net = model().eval()
        net.load_state_dict(load_file(sys.argv[2]), strict=True)
        io = load_file("tests/data/torch_cnn_io.safetensors")
        print(float((net(io["input"].reshape(-1, 1, 8, 8)) - io["logits"]).abs().max()))
        return
    net = model()
    # A few training steps so the batch-norm running statistics are not the defaults.
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(8, 1, 8, 8)
        loss = net(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        logits = net(x)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, "tests/data/torch_cnn.safetensors")
    save_file({"input": x.reshape(5, 64).contiguous(), "logits": logits.contiguous()},
              "tests/data/torch_cnn_io.safetensors")


if __name__ == "__main__":
    main()
