"""Use a trained model: load a checkpoint, predict, export to ONNX / TorchScript."""

from emodistill.serving.export import ExportWrapper, export_model
from emodistill.serving.predict import Prediction, Predictor, load, read_inputs_npz

__all__ = ["load", "Predictor", "Prediction", "read_inputs_npz", "export_model",
           "ExportWrapper"]
