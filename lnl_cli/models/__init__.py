"""Networks: the feature extractor f, label classifier g and bias predictor h."""

from lnl_cli.models.backbones import build_backbone
from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights
from lnl_cli.models.heads import CategoricalBiasHead, ColorBiasHead

__all__ = ["CategoricalBiasHead", "ColorBiasHead", "FeatureExtractor", "LabelClassifier", "build_backbone",
           "init_paper_weights"]
