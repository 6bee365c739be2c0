"""Same seed -> same clips and augmentation whatever the number of DataLoader workers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidnet.data.sampling import RandomClip, worker_rng
from vidnet.data.transforms import ClipAugment, train_preset


class ToyClips(Dataset):
    """Synthetic videos (frame i of video v is filled with a pattern of (v, i)) run through sampler and
    augmentation exactly as a dataset should: one generator per (seed, epoch, index)."""

    def __init__(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch
        self.lengths = [5, 40, 17, 64, 9, 33, 2, 50]
        self.sampler = RandomClip(interval=[1, 2, 3], speed=(0.8, 1.25))
        self.augment = ClipAugment(train_preset("hmdb51", size=12, resize_short=20, crop_size=16))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int):
        rng = worker_rng(self.seed, self.epoch, index)
        frames = self.sampler.sample(self.lengths[index], 6, rng)
        y, x = np.mgrid[0:20, 0:26]
        video = np.stack(
            [
                np.stack([(x * 9 + i * 7) % 256, (y * 11 + index * 31) % 256, (x + y + i) % 256], -1)
                for i in range(self.lengths[index])
            ]
        ).astype(np.uint8)
        clip = self.augment(video[frames], rng)
        return torch.from_numpy(clip), torch.from_numpy(frames)


def _load(num_workers: int, seed: int = 11, epoch: int = 2):
    loader = DataLoader(ToyClips(seed, epoch), batch_size=3, num_workers=num_workers, shuffle=False)
    clips, frames = zip(*loader, strict=True)
    return torch.cat(clips), torch.cat(frames)


def test_same_seed_same_batches_for_0_and_2_workers():
    ref_clips, ref_frames = _load(0)
    for workers in (2,):
        clips, frames = _load(workers)
        assert torch.equal(clips, ref_clips) and torch.equal(frames, ref_frames), f"{workers} workers differ"
    other_clips, _ = _load(0, epoch=3)
    assert not torch.equal(other_clips, ref_clips)  # a new epoch draws new clips
