"""Model weights in the formats users hold, through one key table (`openclip`: OpenCLIP state
dict <-> Flax variables): OpenCLIP files (`openclip`), transformers CLIPModel directories
(`hf`, renamed onto OpenCLIP keys; `hf_processor` writes CLIPProcessor files), open_clip hub
directories (`hub`) and our own orbax directories, all read and written by `model_dir`
(`load_pretrained` / `save_pretrained`) with the metadata schema of `model_info` and the model
card of `model_card`; named published checkpoints are in `presets`."""
