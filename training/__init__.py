"""Training sets from Feast, the torch ranker, its evaluation and ONNX export.

Nothing here imports torch at package import: the server reads the model
registry from this package and must stay free of torch.
"""
