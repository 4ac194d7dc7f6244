"""Where pipelines come from: a YAML folder (now) or the scheduler's Chainer service."""
