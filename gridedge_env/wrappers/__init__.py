"""Adapters over the batched core: PettingZoo ParallelEnv and a batched VecEnv."""
