"""What several test modules share: CLI subprocesses, tiny models, reference encoders, scenes."""
