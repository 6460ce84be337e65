"""The training loop and what it talks to: checkpoints, tracking, schedules, precision, DDP."""
