"""Networks: the feature extractor f, label classifier g and bias predictor h."""

from lnl_cli.models.convnet import FeatureExtractor, LabelClassifier, init_paper_weights
from lnl_cli.models.heads import ColorBiasHead

__all__ = ["FeatureExtractor", "LabelClassifier", "ColorBiasHead", "init_paper_weights"]
