"""Other people's work, in one room: checkpoints mapped onto the paper's nets by structure
(`repro verify`), akamaster's published checkpoints (`repro evaluate --from akamaster`), ONNX
graphs' weights, and other code bases' training logs imported as run folders (`repro import-run`)."""
