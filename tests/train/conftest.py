"""Tiny stand-ins for the training tests: a motion dataset following VideoClipDataset's contract and a
small 3D network, so a whole run takes a fraction of a second per epoch on one CPU core."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset


class MotionClips(Dataset):
    """Class 0: a bright bar moving right; class 1: moving left. Keys are an index or (index, T, H, W)."""

    def __init__(self, n: int = 24, *, num_frames: int = 4, size: tuple[int, int] = (16, 16), seed: int = 0) -> None:
        self.n, self.num_frames, self.size, self.seed = n, num_frames, size, seed
        self.labels = {"right": 0, "left": 1}
        self.num_classes = 2
        self.rows = list(range(n))
        self.hflip = False
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        index, t, h, w = key if isinstance(key, tuple) else (key, self.num_frames, *self.size)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        label = index % 2
        start = int(rng.integers(0, w))
        clip = np.zeros((3, t, h, w), dtype=np.uint8)
        for f in range(t):
            x = (start + (f if label == 0 else -f) * max(1, w // 8)) % w
            clip[:, f, :, x] = 255
        clip += rng.integers(0, 40, size=clip.shape, dtype=np.uint8)
        return {"clip": torch.from_numpy(clip), "label": label, "index": index}


class TinyNet(nn.Module):
    """Conv3d -> BN -> ReLU -> global pool -> Linear (works at any T, H, W)."""

    def __init__(self, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(width)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4))
        return self.fc(self.drop(x))


@pytest.fixture
def motion():
    return MotionClips


@pytest.fixture
def tiny_net():
    return TinyNet
