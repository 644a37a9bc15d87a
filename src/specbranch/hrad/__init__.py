"""H-RAD, the rollback-aware draft structure of SpecBranch (ALGORITHM.md, "H-RAD").

classes (the three predicted classes), features (what the predictor sees), predictor (the
3-class MLP and its file), keeper (its use in the decoding loop, and the label recorder), data
(the collected samples' file), train (fitting the predictor), collect (running the decoder to
gather samples). Which predictor a `--hrad` spec names is resolved by the assembly
(`specbranch.runtime.assembly.resolve_keeper`). This package file imports nothing, so the
light modules (classes) stay light.
"""
