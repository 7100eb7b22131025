"""Model loading (hub id, local folder, embedded GGUF, tiny random), LoRA, reference handling, log-probs."""
