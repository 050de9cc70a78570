"""`make bench`: the platform's speed and memory, each figure next to a baseline
measured in the same run, so the ratio holds on a noisy machine."""
