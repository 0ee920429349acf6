"""The consumer: lease coordination, shard fetching and checkpointing (SPEC §2)."""
