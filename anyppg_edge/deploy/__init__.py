"""Deployment: calibration sets, BN folding, int8 QAT (brevitas), TFLite/ONNX export with the input
contract as metadata, runtimes behind one interface, graph and parity reports.

Heavy dependencies (torch, brevitas, tensorflow, onnxruntime, ai-edge-litert, tflite-support) are
imported inside the sub-modules that need them; importing this package is light.
"""
