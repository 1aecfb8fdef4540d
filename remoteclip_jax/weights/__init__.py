"""Model weights in the formats users hold: OpenCLIP state dicts (``.pt`` / ``.bin`` /
``.safetensors``), read through one key table in both directions (`openclip`), and the named
presets of published checkpoints (`presets`)."""
