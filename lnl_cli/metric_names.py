"""The names of the metrics lnl reports, owned here: every report (lnl_cli.metrics), selection key
(``val_`` + name), plot, progress line, table and benchmark reads them from this module. No torch: the CLI
names them before anything is loaded."""

ACCURACY = "accuracy"
ALIGNED_ACCURACY = "aligned_accuracy"          # on the (label, bias) cells of the training shortcut
CONFLICTING_ACCURACY = "conflicting_accuracy"  # on every other cell
WORST_GROUP_ACCURACY = "worst_group_accuracy"  # of the worst (label, bias) cell with images
BIAS_HEAD_ACCURACY = "bias_head_accuracy"      # h's accuracy on the bias (methods with a bias head)
NUM_SAMPLES = "num_samples"
LABEL_METRICS = (ACCURACY, ALIGNED_ACCURACY, CONFLICTING_ACCURACY, WORST_GROUP_ACCURACY)
SPLIT_METRICS = (*LABEL_METRICS, BIAS_HEAD_ACCURACY)
METRIC_DESCRIPTIONS = {ACCURACY: "accuracy", ALIGNED_ACCURACY: "bias-aligned accuracy",
                       CONFLICTING_ACCURACY: "bias-conflicting accuracy", WORST_GROUP_ACCURACY: "worst-group accuracy",
                       BIAS_HEAD_ACCURACY: "bias-head accuracy"}
